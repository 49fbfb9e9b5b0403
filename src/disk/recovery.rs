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

/// A sector of zeros inside a failed stretch is the mark of a torn write (see the module
/// comment). 512 bytes is the smallest sector of any device.
pub const SECTOR_BYTES: u64 = 512;

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

/// Whether the bytes between a failed batch (file position `start`, expected to hold offset
/// `expected`) and the valid batch that resumes the log right after them (base offset `base`)
/// can only be an unwritten stretch left by a crash.
///
/// What a crash can leave, given how the appender writes (whole 4 KiB blocks with O_DIRECT into
/// preallocated, zero-reading space; a group's tail block rewritten by the next write that
/// covers it; writes completing out of order): unwritten bytes read as zeros, and they form a
/// run that ends on a sector boundary (a device writes whole sectors) and starts either on one
/// or where the lost write's data starts (the failed batch's first byte: a tail whose rewrite
/// never landed leaves zeros from the end of the old tail, a batch boundary, to the end of its
/// block). Media damage flips bits and leaves the batch's structure alone.
///
/// So the stretch is torn only if the failed batch is not structurally whole (a header that
/// parses, starts at `expected`, and whose declared length and offsets lead exactly to the
/// resuming batch: then it is damage, even if its payload holds zeros) and a run of zeros in
/// it has that shape. A partial write that zeroed whole sectors inside an otherwise intact
/// batch therefore counts as damage: a range of never-acknowledged bytes reported as damaged,
/// which is the safe side (see the module comment).
pub fn torn_stretch(stretch: &[u8], start: u64, expected: Offset, base: Offset) -> bool {
    if let Ok(h) = BatchHeader::parse(stretch) {
        let whole = h.base_offset >= 0
            && Offset(h.base_offset as u64) == expected
            && h.total_bytes() == stretch.len()
            && Offset(h.last_offset() as u64 + 1) == base;
        if whole {
            return false;
        }
    }
    let mut i = 0;
    while i < stretch.len() {
        if stretch[i] != 0 {
            i += 1;
            continue;
        }
        let a = i;
        while i < stretch.len() && stretch[i] == 0 {
            i += 1;
        }
        let (run_start, run_end) = (start + a as u64, start + i as u64);
        if run_end % SECTOR_BYTES == 0 && (a == 0 || run_start % SECTOR_BYTES == 0) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{set_base_offset, set_partition_leader_epoch, BatchBuilder};

    fn batch(base: u64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(1000);
        for i in 0..n {
            b.push(1000 + i as i64, None, Some(format!("v{i}").as_bytes()), &[]);
        }
        let mut bytes = b.finish().to_vec();
        set_base_offset(&mut bytes, base as i64);
        set_partition_leader_epoch(&mut bytes, 0);
        bytes
    }

    /// `count` batches of `n` records each from offset 0, and their positions.
    fn log_of(count: usize, n: usize) -> (Vec<u8>, Vec<u64>) {
        let mut log = Vec::new();
        let mut pos = Vec::new();
        for i in 0..count {
            pos.push(log.len() as u64);
            log.extend(batch((i * n) as u64, n));
        }
        (log, pos)
    }

    fn policy(recovery_point: u64) -> ScanPolicy {
        let mut epochs = EpochCache::default();
        epochs.assign(Epoch(0), Offset(0));
        ScanPolicy {
            segment: Offset(0),
            batch_bytes_max: 1 << 20,
            recovery_point: Offset(recovery_point),
            epochs,
            known: Vec::new(),
            end_offset: None,
            trim_zero_tail: true,
            stop_after_damage: false,
        }
    }

    struct Scan {
        batches: Vec<ScannedBatch>,
        end: ScanEnd,
        position: u64,
        next: Offset,
        damaged: Vec<DamagedRange>,
    }

    /// Scans `buf` feeding at most `chunk` bytes at a time, as the driver does.
    fn scan_chunked(buf: &[u8], p: ScanPolicy, chunk: usize) -> Scan {
        let mut s = Scanner::new(0, Offset(0), p);
        let mut seen = Vec::new();
        let mut from = s.cursor();
        let mut want = chunk;
        for _ in 0..100_000 {
            let to = (from as usize + want.max(chunk)).min(buf.len());
            let slice = &buf[from as usize..to];
            match s.feed(slice, to == buf.len(), &mut |b, _| seen.push(*b)) {
                Feed::Done(end) => {
                    return Scan {
                        batches: seen,
                        end,
                        position: s.position(),
                        next: s.next_offset(),
                        damaged: s.damaged().to_vec(),
                    }
                }
                Feed::NeedMore { from: f, at_least } => {
                    assert!(
                        !(f == from && slice.len() >= at_least && to < buf.len()),
                        "asked again for bytes it had"
                    );
                    from = f;
                    want = at_least;
                }
            }
        }
        panic!("the scan does not end");
    }

    fn scan(buf: &[u8], p: ScanPolicy) -> Scan {
        scan_chunked(buf, p, usize::MAX / 4)
    }

    #[test]
    fn clean_log_scans_to_the_end() {
        let (log, _) = log_of(2, 3);
        let s = scan(&log, policy(0));
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.end, ScanEnd::Clean);
        assert_eq!(s.position, log.len() as u64);
        assert!(s.damaged.is_empty());
    }

    #[test]
    fn zero_padding_is_not_damage() {
        let (mut log, _) = log_of(1, 3);
        let len = log.len();
        log.resize(4096, 0);
        let s = scan(&log, policy(0));
        assert_eq!(s.batches.len(), 1);
        assert_eq!(s.end, ScanEnd::ZeroPadding);
        assert_eq!(s.position, len as u64);
    }

    #[test]
    fn gap_in_offsets_is_a_torn_tail_past_the_recovery_point() {
        let mut log = batch(0, 3);
        let first = log.len() as u64;
        log.extend(batch(7, 2));
        let s = scan(&log, policy(3));
        assert_eq!(s.batches.len(), 1);
        assert!(matches!(s.end, ScanEnd::Invalid { position, .. } if position == first));
        assert_eq!(s.position, first);
    }

    #[test]
    fn torn_tail_past_the_recovery_point_is_cut() {
        let (log, pos) = log_of(4, 2);
        for cut in [pos[3] + 1, pos[3] + 61, log.len() as u64 - 1] {
            let s = scan(&log[..cut as usize], policy(6));
            assert_eq!(s.batches.len(), 3);
            assert_eq!((s.position, s.next), (pos[3], Offset(6)));
            // A cut inside the zero high bytes of the base offset leaves only zeros.
            assert!(matches!(
                s.end,
                ScanEnd::Invalid { .. } | ScanEnd::ZeroPadding
            ));
            assert!(s.damaged.is_empty());
        }
    }

    #[test]
    fn torn_tail_below_the_recovery_point_is_a_damaged_range() {
        let (log, pos) = log_of(4, 2);
        let cut = pos[2] + 30;
        let mut p = policy(8);
        p.trim_zero_tail = false;
        let s = scan(&log[..cut as usize], p);
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.next, Offset(8), "the log end stays at the recovery point");
        assert_eq!(s.damaged.len(), 1);
        let d = &s.damaged[0];
        assert_eq!((d.first, d.last), (Offset(4), Offset(7)));
        assert_eq!((d.start_pos, d.end_pos), (pos[2], cut));
        // Cut exactly at a batch boundary: the range has no bytes.
        let s = scan(&log[..pos[3] as usize], policy(8));
        assert_eq!(s.batches.len(), 3);
        assert_eq!(s.next, Offset(8));
        let d = &s.damaged[0];
        assert_eq!(
            (d.first, d.last, d.start_pos, d.end_pos),
            (Offset(6), Offset(7), pos[3], pos[3])
        );
    }

    #[test]
    fn a_flipped_bit_followed_by_valid_batches_is_damage_even_past_the_recovery_point() {
        let (log, pos) = log_of(6, 3);
        for rp in [0u64, 18] {
            for at in [0usize, 9, 16, 17, 30, 70] {
                let mut bad = log.clone();
                bad[pos[2] as usize + at] ^= 0x10;
                for chunk in [64usize, 100, 1 << 20] {
                    let s = scan_chunked(&bad, policy(rp), chunk);
                    let ctx = format!("rp {rp}, byte {at}, chunk {chunk}");
                    assert_eq!(s.end, ScanEnd::Clean, "{ctx}");
                    assert_eq!(s.next, Offset(18), "{ctx}");
                    assert_eq!(s.batches.len(), 5, "{ctx}");
                    assert_eq!(s.damaged.len(), 1, "{ctx}");
                    let d = &s.damaged[0];
                    assert_eq!((d.first, d.last), (Offset(6), Offset(8)), "{ctx}");
                    assert_eq!((d.start_pos, d.end_pos), (pos[2], pos[3]), "{ctx}");
                }
            }
        }
    }

    /// Four batches of one 1500-byte record of `fill` bytes, and their positions.
    fn big_batches(fill: u8) -> (Vec<u8>, Vec<u64>) {
        let mut log = Vec::new();
        let mut pos = Vec::new();
        for i in 0..4u64 {
            pos.push(log.len() as u64);
            let mut b = BatchBuilder::new(1000);
            b.push(1000, None, Some(&[fill; 1500]), &[]);
            let mut bytes = b.finish().to_vec();
            set_base_offset(&mut bytes, i as i64);
            set_partition_leader_epoch(&mut bytes, 0);
            log.extend(bytes);
        }
        (log, pos)
    }

    #[test]
    fn an_unwritten_stretch_before_later_batches_is_a_torn_write_past_the_recovery_point() {
        // A tail whose rewrite never landed: zeros from batch 2's first byte to the end of its
        // sector, the rest of the file written by later writes.
        let (mut log, pos) = big_batches(7);
        let z = pos[2].next_multiple_of(SECTOR_BYTES) as usize;
        log[pos[2] as usize..z].fill(0);
        let s = scan(&log, policy(2));
        assert!(matches!(s.end, ScanEnd::Invalid { position, .. } if position == pos[2]));
        assert_eq!(s.next, Offset(2));
        assert!(s.damaged.is_empty());
        // Below the recovery point the same bytes are damage.
        let s = scan(&log, policy(3));
        assert_eq!(s.next, Offset(4));
        assert_eq!(s.damaged[0].first, Offset(2));
        assert_eq!(s.damaged[0].last, Offset(2));
        // Whole unwritten sectors after a lost header: torn too.
        let (mut log, pos) = big_batches(7);
        log[pos[2] as usize..pos[2] as usize + 12].fill(0x5a);
        let z = pos[2].next_multiple_of(SECTOR_BYTES) as usize;
        log[z..z + SECTOR_BYTES as usize].fill(0);
        let s = scan(&log, policy(2));
        assert!(matches!(s.end, ScanEnd::Invalid { position, .. } if position == pos[2]));
    }

    /// Review of issue 9, finding 1: a flipped bit in a batch whose payload is zeros, past the
    /// recovery point, with valid batches after it, is damage: the zeros are written data of a
    /// structurally whole batch, not an unwritten stretch. (It was cut as a torn write, dropping
    /// the acknowledged batches after it and reusing their offsets.)
    #[test]
    fn a_flipped_bit_in_a_batch_of_zeros_is_damage_not_a_torn_write() {
        let (mut log, pos) = big_batches(0);
        log[pos[2] as usize + 100] ^= 0x10;
        let s = scan(&log, policy(1));
        assert_eq!(s.next, Offset(4), "{:?}", s.end);
        assert_eq!(s.damaged.len(), 1);
        assert_eq!(
            (s.damaged[0].first, s.damaged[0].last),
            (Offset(2), Offset(2))
        );
        // A partial write that zeroed whole sectors inside an intact batch: damage as well, the
        // safe side (those bytes were never acknowledged, the rule cannot tell).
        let (mut log, pos) = big_batches(7);
        let z = pos[2].next_multiple_of(SECTOR_BYTES) as usize;
        log[z..z + SECTOR_BYTES as usize].fill(0);
        let s = scan(&log, policy(2));
        assert_eq!(s.next, Offset(4));
        assert_eq!(s.damaged[0].first, Offset(2));
    }

    /// Review of issue 9, finding 6: the last durable batch damaged, its payload ending in
    /// zeros: the range spans the batch's declared length, not only up to its last non-zero
    /// byte, so a replica's copy of the batch fills the span exactly (`repair_range`).
    #[test]
    fn a_damaged_last_batch_ending_in_zeros_spans_its_declared_length() {
        let (mut log, pos) = big_batches(0);
        let batch_end = log.len() as u64;
        log[pos[3] as usize + 20] ^= 0x01;
        // Zero padding after the log, as preallocation leaves it.
        log.resize(log.len() + 3 * SECTOR_BYTES as usize, 0);
        let s = scan(&log, policy(4));
        assert_eq!(s.next, Offset(4));
        assert_eq!(s.damaged.len(), 1);
        let d = &s.damaged[0];
        assert_eq!((d.first, d.last), (Offset(3), Offset(3)));
        assert_eq!((d.start_pos, d.end_pos), (pos[3], batch_end));
        // A length field that was hit itself claims no more than the file holds.
        let (mut log, pos) = big_batches(0);
        log[pos[3] as usize + 10] = 0x7f;
        let file_end = log.len() as u64;
        let s = scan(&log, policy(4));
        assert_eq!(s.damaged[0].end_pos, file_end);
    }

    #[test]
    fn an_impossible_epoch_is_damage_and_the_walk_goes_on() {
        let (mut log, pos) = log_of(3, 2);
        log[pos[1] as usize + 12] ^= 1; // epoch 16777216
        let s = scan(&log, policy(0));
        assert_eq!(s.next, Offset(6));
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.damaged.len(), 1);
        assert_eq!(
            (s.damaged[0].first, s.damaged[0].last),
            (Offset(2), Offset(3))
        );
        assert_eq!(s.last_epoch_of(&log), Some(Epoch(0)));
        // The last batch too, past the recovery point: a whole, CRC-valid batch is not torn.
        let (mut log, pos) = log_of(3, 2);
        log[pos[2] as usize + 12] ^= 1;
        let s = scan(&log, policy(0));
        assert_eq!(s.next, Offset(6));
        assert_eq!(
            (s.damaged[0].first, s.damaged[0].last),
            (Offset(4), Offset(5))
        );
    }

    impl Scan {
        fn last_epoch_of(&self, _log: &[u8]) -> Option<Epoch> {
            self.batches
                .last()
                .map(|b| Epoch(b.header.partition_leader_epoch))
        }
    }

    #[test]
    fn known_ranges_are_stepped_over() {
        let (mut log, pos) = log_of(4, 2);
        log[pos[1] as usize + 40] ^= 0xff;
        let mut p = policy(8);
        p.known.push(DamagedRange {
            first: Offset(2),
            last: Offset(3),
            segment: Offset(0),
            start_pos: pos[1],
            end_pos: pos[2],
            reason: "x".into(),
        });
        let s = scan_chunked(&log, p.clone(), 70);
        assert_eq!(s.next, Offset(8));
        assert_eq!(s.batches.len(), 3);
        assert_eq!(s.damaged.len(), 1);
        // Review of issue 9, finding 7: a known range whose bytes are valid (repaired before
        // a crash, or named by a lying file) is read, not stepped over.
        let (log, _) = log_of(4, 2);
        for chunk in [70, 4096] {
            let s = scan_chunked(&log, p.clone(), chunk);
            assert_eq!(s.next, Offset(8));
            assert_eq!(s.batches.len(), 4, "chunk {chunk}");
            assert!(s.damaged.is_empty());
        }
    }

    #[test]
    fn garbage_after_the_end_is_cut() {
        let (mut log, _) = log_of(2, 2);
        let len = log.len() as u64;
        log.extend(batch(9, 2)); // a valid batch that leaves a gap
        let s = scan(&log, policy(4));
        assert_eq!(s.position, len);
        assert!(matches!(s.end, ScanEnd::Invalid { .. }));
        let (mut log, _) = log_of(2, 2);
        log.extend([0xab; 300]);
        let s = scan(&log, policy(4));
        assert_eq!(s.position, len);
        assert!(matches!(s.end, ScanEnd::Invalid { .. }));
    }

    #[test]
    fn stop_after_damage_locates_one_range() {
        let (mut log, pos) = log_of(5, 2);
        log[pos[1] as usize + 30] ^= 1;
        log[pos[3] as usize + 30] ^= 1;
        let mut p = policy(u64::MAX);
        p.stop_after_damage = true;
        p.trim_zero_tail = false;
        let mut s = Scanner::resyncing(pos[1], Offset(2), "bad crc".into(), p);
        match s.feed(&log[pos[1] as usize..], true, &mut |_, _| {}) {
            Feed::Done(ScanEnd::Clean) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(s.damaged().len(), 1);
        assert_eq!(
            (s.damaged()[0].first, s.damaged()[0].last),
            (Offset(2), Offset(3))
        );
        assert_eq!(s.position(), pos[2]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A log of batches of 1 to 4 records with values of varied sizes, epoch 0.
        fn varied_log(sizes: &[(usize, usize)]) -> (Vec<u8>, Vec<(u64, u64, u64)>) {
            let mut log = Vec::new();
            let mut model = Vec::new();
            let mut next = 0u64;
            for (i, &(n, value)) in sizes.iter().enumerate() {
                let mut b = BatchBuilder::new(1000);
                for r in 0..n {
                    let v: Vec<u8> = (0..value).map(|k| (k * 31 + i * 7 + r) as u8 | 1).collect();
                    b.push(1000 + r as i64, None, Some(&v), &[]);
                }
                let mut bytes = b.finish().to_vec();
                set_base_offset(&mut bytes, next as i64);
                set_partition_leader_epoch(&mut bytes, 0);
                model.push((log.len() as u64, next, next + n as u64));
                next += n as u64;
                log.extend(bytes);
            }
            (log, model)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            /// One flipped bit anywhere in a batch that has valid batches after it, whatever the
            /// recovery point and the chunking: the scan ends at the original end, reports
            /// exactly that batch as damaged, and passes every other batch through unchanged.
            /// In the last batch, it is damage below the recovery point and a cut tail past it,
            /// except for an impossible epoch, which is damage everywhere.
            #[test]
            fn one_flipped_bit_damages_exactly_its_batch(
                sizes in prop::collection::vec((1usize..5, 0usize..300), 2..8),
                pick in any::<prop::sample::Index>(),
                at in any::<prop::sample::Index>(),
                bit in 0u32..8,
                rp_past in any::<bool>(),
                chunk in prop::sample::select(vec![61usize, 200, 4096, 1 << 20]),
            ) {
                let (log, model) = varied_log(&sizes);
                let m = pick.index(model.len());
                let (pos, base, next) = model[m];
                let len = model.get(m + 1).map_or(log.len() as u64, |b| b.0) - pos;
                let byte = pos + at.index(len as usize) as u64;
                let mut bad = log.clone();
                bad[byte as usize] ^= 1 << bit;
                let end = model.last().unwrap().2;
                let rp = if rp_past { base } else { end };
                let s = scan_chunked(&bad, policy(rp), chunk);
                let last = m + 1 == model.len();
                let in_epoch = (12..16).contains(&(byte - pos));
                if last && rp_past && !in_epoch {
                    prop_assert_eq!(s.next, Offset(base));
                    prop_assert_eq!(s.position, pos);
                    prop_assert!(s.damaged.is_empty());
                } else {
                    prop_assert_eq!(s.next, Offset(end));
                    prop_assert_eq!(s.damaged.len(), 1);
                    let d = &s.damaged[0];
                    prop_assert_eq!((d.first, d.last), (Offset(base), Offset(next - 1)));
                    prop_assert_eq!(d.start_pos, pos);
                    prop_assert!(d.end_pos <= pos + len);
                }
                let bases: Vec<u64> = s.batches.iter().map(|b| b.base().0).collect();
                let want: Vec<u64> = model
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != m)
                    .map(|(_, b)| b.1)
                    .collect();
                prop_assert_eq!(bases, want);
            }

            /// Arbitrary bytes never make the scan panic or loop, and what it accepts is
            /// contiguous from the start: batches and damaged ranges tile the offsets.
            #[test]
            fn arbitrary_damage_never_panics_and_tiles_offsets(
                sizes in prop::collection::vec((1usize..4, 0usize..100), 1..6),
                noise in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..20),
                cut in any::<prop::sample::Index>(),
                rp_frac in 0u64..3,
                chunk in prop::sample::select(vec![61usize, 128, 1 << 20]),
            ) {
                let (mut log, model) = varied_log(&sizes);
                for (i, x) in noise {
                    let i = i.index(log.len());
                    log[i] ^= x;
                }
                log.truncate(cut.index(log.len() + 1));
                let end = model.last().unwrap().2;
                let s = scan_chunked(&log, policy(end * rp_frac / 2), chunk);
                let mut pieces: Vec<(u64, u64)> = s
                    .batches
                    .iter()
                    .map(|b| (b.base().0, b.next_offset().0))
                    .chain(s.damaged.iter().map(|d| (d.first.0, d.next().0)))
                    .collect();
                pieces.sort();
                let mut at = 0;
                for (a, b) in pieces {
                    prop_assert_eq!(a, at);
                    at = b;
                }
                prop_assert_eq!(at, s.next.0);
                prop_assert!(s.position <= log.len() as u64);
            }
        }
    }
}
