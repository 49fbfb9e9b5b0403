//! The recovery scan (sans-I/O): walks the bytes of a segment batch by batch, tells a torn tail
//! (cut off, as after any crash) from damage inside the log (kept and reported, never cut), and
//! says where the log ends.
//!
//! The driver in `segment.rs` reads the file in chunks and feeds them to a [`Scanner`]. Every
//! batch is validated in full (length, magic, CRC-32C, records, contiguous offsets) and its
//! leader epoch, which lies outside the CRC, is checked against the leader-epoch checkpoint.
//!
//! When a batch fails, the scanner *resyncs*: it searches forward for the next position where a
//! whole, valid batch with a later base offset starts. What it finds decides:
//!
//! - **Below the recovery point** (offsets known durable before the crash) a failure is always
//!   damage: the offsets up to the next valid batch, or up to the recovery point when none
//!   follows, become a [`DamagedRange`]; nothing is cut.
//! - **At or past the recovery point** a failure followed by nothing valid is a torn tail and is
//!   cut, as before. A failure followed by a valid batch is damage too, unless the stretch in
//!   between has the shape only an unwritten stretch has (see [`torn_stretch`]): writes of one
//!   segment complete out of order, so a crash can leave unwritten (zero) bytes with later,
//!   never acknowledged batches after them. When in doubt the rule says damage: calling damage
//!   torn would cut acknowledged records, while calling a torn stretch damage only keeps a range
//!   of never-acknowledged bytes reported as damaged.
//! - A batch that is whole and CRC-valid but carries an impossible epoch is damage wherever it
//!   is: a torn write cannot produce it.

use crate::record::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::types::{Epoch, Offset};

use super::damage::DamagedRange;
use super::epochs::EpochCache;

mod torn;

pub use torn::{torn_stretch, SECTOR_BYTES};

/// One valid batch found by the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    /// File position of the batch's first byte.
    pub position: u64,
    pub header: BatchHeader,
}

impl ScannedBatch {
    pub fn base(&self) -> Offset {
        Offset(self.header.base_offset as u64)
    }

    pub fn next_offset(&self) -> Offset {
        Offset(self.header.last_offset() as u64 + 1)
    }

    pub fn bytes(&self) -> u64 {
        self.header.total_bytes() as u64
    }

    pub fn end(&self) -> u64 {
        self.position + self.bytes()
    }
}

/// Why the scan stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// The bytes ended exactly after a batch (or a damaged range).
    Clean,
    /// Only zero bytes follow: the padding of the last direct-I/O block or preallocated space,
    /// not damage.
    ZeroPadding,
    /// A torn tail starts at `position` (the caller cuts it); the reason says what failed.
    Invalid { position: u64, reason: String },
}

/// What the scanner wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Feed bytes again starting at file position `from`, at least `at_least` of them.
    NeedMore { from: u64, at_least: usize },
    /// The scan is over: the log ends at [`Scanner::position`] and [`Scanner::next_offset`].
    Done(ScanEnd),
}

/// What the scanner knows and assumes about the segment it walks.
#[derive(Clone, Debug)]
pub struct ScanPolicy {
    /// Base offset of the segment (named in the damaged ranges found).
    pub segment: Offset,
    pub batch_bytes_max: usize,
    /// Offsets below this were durable before the crash: a failure there is damage, never a
    /// torn tail, and the log ends no earlier. A sealed segment is durable whole (its next
    /// segment's base); a read of written bytes passes `Offset(u64::MAX)`.
    pub recovery_point: Offset,
    /// The leader epochs batches must carry.
    pub epochs: EpochCache,
    /// Damaged ranges of this segment already known (from the `damaged-ranges` file), oldest
    /// first: the walk steps over them without searching again.
    pub known: Vec<DamagedRange>,
    /// Where the segment's offsets end, when known (a sealed segment: the next segment's base):
    /// a resync accepts no batch at or past it.
    pub end_offset: Option<Offset>,
    /// A damaged range that reaches the end of the data ends at the last non-zero byte (the
    /// active segment at open, whose file may end with preallocated zeros) rather than at the
    /// end of the bytes fed.
    pub trim_zero_tail: bool,
    /// End the scan as soon as one damaged range is found (a read locating the damage it hit).
    pub stop_after_damage: bool,
}

/// A search for the next valid batch after a failed one.
#[derive(Clone, Debug)]
struct Resync {
    /// Where the failed batch starts, and the offset it should have started at.
    start: u64,
    expected: Offset,
    reason: String,
    /// The next candidate position to test.
    search: u64,
    /// A valid batch (its position and base offset) resumes the log here; the stretch from
    /// `start` to it must be looked at whole before deciding torn or damaged.
    resumes_at: Option<(u64, Offset)>,
    /// The end of the last non-zero byte seen at or after `start`.
    nonzero_end: u64,
    /// Where the failed batch ends by its own length field, when that is plausible: a damaged
    /// batch whose last bytes are zeros still spans its whole declared length, so a replica's
    /// copy of it fills the span exactly.
    declared_end: Option<u64>,
    /// Bytes at or after `start` were looked at up to here (for `nonzero_end`).
    seen_upto: u64,
}

/// Walks concatenated batches. `position` is the end of what is accepted so far: valid batches
/// and damaged ranges.
#[derive(Clone, Debug)]
pub struct Scanner {
    policy: ScanPolicy,
    position: u64,
    next_offset: Offset,
    last_epoch: Option<Epoch>,
    /// The file position the next buffer fed must start at.
    cursor: u64,
    resync: Option<Resync>,
    damaged: Vec<DamagedRange>,
    known_next: usize,
}

/// What one batch position holds.
enum Check {
    Valid(BatchHeader),
    /// Whole and CRC-valid at the right offset, but its epoch is impossible.
    BadEpoch(BatchHeader, String),
    Invalid(String),
    NeedMore(usize),
}

impl Scanner {
    /// Starts at file `position`, where the batch with offset `next_offset` must start.
    pub fn new(position: u64, next_offset: Offset, policy: ScanPolicy) -> Self {
        Scanner {
            policy,
            position,
            next_offset,
            last_epoch: None,
            cursor: position,
            resync: None,
            damaged: Vec::new(),
            known_next: 0,
        }
    }

    /// Starts with the batch at `position` (expected to start at `next_offset`) already known to
    /// fail for `reason`: the scan searches for where valid batches resume.
    pub fn resyncing(
        position: u64,
        next_offset: Offset,
        reason: String,
        policy: ScanPolicy,
    ) -> Self {
        let mut s = Scanner::new(position, next_offset, policy);
        s.start_resync(reason, &[]);
        s
    }

    /// End of what the scan accepted: the log's bytes end here.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The offset after what the scan accepted: the log end.
    pub fn next_offset(&self) -> Offset {
        self.next_offset
    }

    /// Leader epoch of the last valid batch, once one was seen.
    pub fn last_epoch(&self) -> Option<Epoch> {
        self.last_epoch
    }

    /// Where the first buffer fed must start.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The damaged ranges found (and known ranges stepped over), oldest first.
    pub fn damaged(&self) -> &[DamagedRange] {
        &self.damaged
    }

    fn need(&mut self, from: u64, at_least: usize) -> Feed {
        self.cursor = from;
        Feed::NeedMore { from, at_least }
    }

    fn start_resync(&mut self, reason: String, rest: &[u8]) {
        let declared_end = rest
            .get(8..12)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .filter(|&len| len > 0)
            .map(|len| 12 + len as usize)
            .filter(|&total| total >= BATCH_HEADER_BYTES && total <= self.policy.batch_bytes_max)
            .map(|total| self.position + total as u64);
        self.resync = Some(Resync {
            start: self.position,
            expected: self.next_offset,
            reason,
            search: self.position + 1,
            resumes_at: None,
            nonzero_end: self.position,
            declared_end,
            seen_upto: self.position,
        });
    }

    fn record(&mut self, range: DamagedRange) {
        self.position = range.end_pos;
        self.next_offset = range.next();
        self.damaged.push(range);
    }

    /// Feeds `buf`, which holds the file's bytes from the position the last [`Feed::NeedMore`]
    /// named (or [`Scanner::cursor`] at first); `at_eof` says the file ends at the end of `buf`.
    /// Calls `on_batch` for each valid batch.
    pub fn feed(
        &mut self,
        buf: &[u8],
        at_eof: bool,
        on_batch: &mut dyn FnMut(&ScannedBatch, &[u8]),
    ) -> Feed {
        loop {
            if self.resync.is_some() {
                match self.resync_step(buf, at_eof) {
                    Some(feed) => return feed,
                    None => {
                        if self.policy.stop_after_damage && !self.damaged.is_empty() {
                            return Feed::Done(ScanEnd::Clean);
                        }
                        continue;
                    }
                }
            }
            let end = self.cursor + buf.len() as u64;
            // Step over a damaged range known from the file.
            while self
                .policy
                .known
                .get(self.known_next)
                .is_some_and(|k| k.start_pos < self.position)
            {
                self.known_next += 1;
            }
            if let Some(k) = self.policy.known.get(self.known_next) {
                if k.start_pos == self.position
                    && k.first == self.next_offset
                    && !(at_eof && k.end_pos > end)
                {
                    // Only while its bytes still fail: a range repaired just before a crash
                    // (or named by a file that lies) is read as the valid batches it holds.
                    let rest = match self.position.checked_sub(self.cursor) {
                        Some(at) if self.position <= end => &buf[at as usize..],
                        _ => return self.need(self.position, BATCH_HEADER_BYTES),
                    };
                    match self.check(rest, at_eof) {
                        Check::NeedMore(n) => return self.need(self.position, n),
                        Check::Valid(_) => self.known_next += 1,
                        Check::Invalid(_) | Check::BadEpoch(..) => {
                            let k = k.clone();
                            self.known_next += 1;
                            self.record(k);
                            continue;
                        }
                    }
                }
            }
            if self.position > end || self.position < self.cursor {
                return self.need(self.position, BATCH_HEADER_BYTES);
            }
            let rest = &buf[(self.position - self.cursor) as usize..];
            if rest.is_empty() {
                if !at_eof {
                    return self.need(self.position, BATCH_HEADER_BYTES);
                }
                return Feed::Done(self.end_of_bytes());
            }
            match self.check(rest, at_eof) {
                Check::NeedMore(n) => return self.need(self.position, n),
                Check::Invalid(reason) => self.start_resync(reason, rest),
                Check::BadEpoch(h, reason) => {
                    let range = DamagedRange {
                        first: self.next_offset,
                        last: Offset(h.last_offset() as u64),
                        segment: self.policy.segment,
                        start_pos: self.position,
                        end_pos: self.position + h.total_bytes() as u64,
                        reason,
                    };
                    self.record(range);
                    if self.policy.stop_after_damage {
                        return Feed::Done(ScanEnd::Clean);
                    }
                }
                Check::Valid(header) => {
                    let total = header.total_bytes();
                    let scanned = ScannedBatch {
                        position: self.position,
                        header,
                    };
                    on_batch(&scanned, &rest[..total]);
                    self.last_epoch = Some(Epoch(header.partition_leader_epoch));
                    self.next_offset = scanned.next_offset();
                    self.position += total as u64;
                }
            }
        }
    }

    /// Checks the batch at the start of `rest` (at `self.position`).
    fn check(&self, rest: &[u8], at_eof: bool) -> Check {
        if rest.len() < BATCH_HEADER_BYTES {
            if !at_eof {
                return Check::NeedMore(BATCH_HEADER_BYTES);
            }
            return Check::Invalid("truncated batch header".into());
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => return Check::Invalid(e.to_string()),
        };
        let total = header.total_bytes();
        if total > self.policy.batch_bytes_max {
            return Check::Invalid(format!(
                "batch of {total} bytes is over the {} byte limit",
                self.policy.batch_bytes_max
            ));
        }
        if rest.len() < total {
            if !at_eof {
                return Check::NeedMore(total);
            }
            return Check::Invalid(format!(
                "torn batch: {total} bytes declared, {} present",
                rest.len()
            ));
        }
        if let Err(e) = record::validate_batch(&rest[..total], self.policy.batch_bytes_max) {
            return Check::Invalid(e.to_string());
        }
        if header.base_offset < 0 || Offset(header.base_offset as u64) != self.next_offset {
            return Check::Invalid(format!(
                "batch starts at offset {}, expected {}",
                header.base_offset, self.next_offset
            ));
        }
        let epoch = Epoch(header.partition_leader_epoch);
        match self
            .policy
            .epochs
            .check_batch(self.next_offset, epoch, self.last_epoch)
        {
            Ok(()) => Check::Valid(header),
            Err(reason) => Check::BadEpoch(header, reason),
        }
    }

    /// The bytes ended exactly after a batch (or damaged range). If that is before the recovery
    /// point, the durable offsets after it are gone: a damaged range with no bytes.
    fn end_of_bytes(&mut self) -> ScanEnd {
        let rp = self.policy.recovery_point;
        if self.next_offset < rp && rp != Offset(u64::MAX) {
            let range = DamagedRange {
                first: self.next_offset,
                last: rp.prev(),
                segment: self.policy.segment,
                start_pos: self.position,
                end_pos: self.position,
                reason: format!(
                    "the segment ends at offset {}, before offset {rp} that was durable",
                    self.next_offset
                ),
            };
            self.record(range);
        }
        ScanEnd::Clean
    }

    /// One step of the search for the next valid batch; `None` once it is over and the walk goes
    /// on (a damaged range was recorded), `Some` to return.
    fn resync_step(&mut self, buf: &[u8], at_eof: bool) -> Option<Feed> {
        let cursor = self.cursor;
        let end = cursor + buf.len() as u64;
        let policy = &self.policy;
        let r = self.resync.as_mut().expect("resyncing");
        if let Some((c, base)) = r.resumes_at {
            // Decide on the whole stretch from the failed batch to where the log resumes.
            if r.start < cursor || c > end {
                let (from, len) = (r.start, (c - r.start) as usize);
                return Some(self.need(from, len.max(1)));
            }
            let stretch = &buf[(r.start - cursor) as usize..(c - cursor) as usize];
            return self.resume(c, base, stretch);
        }
        if r.search < cursor {
            let from = r.search;
            return Some(self.need(from, BATCH_HEADER_BYTES));
        }
        // Look at the bytes not seen yet: sectors of zeros, and the last non-zero byte.
        if end > r.seen_upto && r.seen_upto >= cursor {
            let from = (r.seen_upto - cursor) as usize;
            if let Some(i) = buf[from..].iter().rposition(|&b| b != 0) {
                r.nonzero_end = r.nonzero_end.max(r.seen_upto + i as u64 + 1);
            }
            r.seen_upto = end;
        }
        // Candidates: a batch's magic byte (2) lies 16 bytes into it.
        let mut at = r.search;
        loop {
            let magic_at = at + 16;
            let found = if magic_at < end {
                memchr::memchr(2, &buf[(magic_at - cursor) as usize..])
            } else {
                None
            };
            let Some(d) = found else {
                if at_eof {
                    return Some(self.resync_failed(end));
                }
                let from = at.max(end.saturating_sub(16)).max(cursor + 1);
                self.resync.as_mut().expect("resyncing").search = from;
                return Some(self.need(from, BATCH_HEADER_BYTES));
            };
            let c = magic_at + d as u64 - 16;
            let ci = (c - cursor) as usize;
            let rest = &buf[ci..];
            if rest.len() < BATCH_HEADER_BYTES {
                if at_eof {
                    at = c + 1;
                    continue;
                }
                self.resync.as_mut().expect("resyncing").search = c;
                return Some(self.need(c, BATCH_HEADER_BYTES));
            }
            let plausible = BatchHeader::parse(rest).ok().filter(|h| {
                h.base_offset >= 0
                    && Offset(h.base_offset as u64) > r.expected
                    && policy
                        .end_offset
                        .is_none_or(|e| Offset(h.last_offset() as u64) < e)
                    && h.total_bytes() <= policy.batch_bytes_max
            });
            let Some(h) = plausible else {
                at = c + 1;
                continue;
            };
            let total = h.total_bytes();
            if rest.len() < total {
                if at_eof {
                    at = c + 1;
                    continue;
                }
                self.resync.as_mut().expect("resyncing").search = c;
                return Some(self.need(c, total));
            }
            let base = Offset(h.base_offset as u64);
            let valid = record::validate_batch(&rest[..total], policy.batch_bytes_max).is_ok()
                && policy
                    .epochs
                    .check_batch(base, Epoch(h.partition_leader_epoch), None)
                    .is_ok();
            if !valid {
                at = c + 1;
                continue;
            }
            // A valid batch resumes at `c`: decide on the stretch before it.
            let start = r.start;
            self.resync.as_mut().expect("resyncing").resumes_at = Some((c, base));
            if start < cursor {
                return Some(self.need(start, (c - start) as usize));
            }
            let stretch = &buf[(start - cursor) as usize..(c - cursor) as usize];
            return self.resume(c, base, stretch);
        }
    }

    /// A valid batch with base offset `base` resumes the log at `c`; `stretch` holds the bytes
    /// from the failed batch to it. Records the damaged range and goes on (`None`), or ends the
    /// scan at a torn write.
    fn resume(&mut self, c: u64, base: Offset, stretch: &[u8]) -> Option<Feed> {
        let r = self.resync.take().expect("resyncing");
        let torn = r.expected >= self.policy.recovery_point
            && torn_stretch(stretch, r.start, r.expected, base);
        if torn {
            self.position = r.start;
            return Some(Feed::Done(ScanEnd::Invalid {
                position: r.start,
                reason: format!(
                    "{} (torn write: unwritten bytes before later batches)",
                    r.reason
                ),
            }));
        }
        let range = DamagedRange {
            first: r.expected,
            last: base.prev(),
            segment: self.policy.segment,
            start_pos: r.start,
            end_pos: c,
            reason: format!("invalid batch at byte {}: {}", r.start, r.reason),
        };
        self.record(range);
        None
    }

    /// No valid batch follows the failed one up to `end`, the end of the file.
    fn resync_failed(&mut self, end: u64) -> Feed {
        let r = self.resync.take().expect("resyncing");
        let rp = self.policy.recovery_point;
        let tail_end = self.policy.end_offset.map_or(rp, |e| e.min(rp));
        if r.expected < tail_end {
            // Durable offsets: keep the bytes, the log end stays.
            let end_pos = if self.policy.trim_zero_tail {
                r.nonzero_end.max(r.declared_end.unwrap_or(0).min(end))
            } else {
                end
            };
            let range = DamagedRange {
                first: r.expected,
                last: tail_end.prev(),
                segment: self.policy.segment,
                start_pos: r.start,
                end_pos: end_pos.max(r.start),
                reason: format!("invalid batch at byte {}: {}", r.start, r.reason),
            };
            self.record(range);
            return Feed::Done(if self.position < end {
                ScanEnd::ZeroPadding
            } else {
                ScanEnd::Clean
            });
        }
        self.position = r.start;
        if r.nonzero_end == r.start {
            Feed::Done(ScanEnd::ZeroPadding)
        } else {
            Feed::Done(ScanEnd::Invalid {
                position: r.start,
                reason: r.reason,
            })
        }
    }
}

#[cfg(test)]
mod tests;
