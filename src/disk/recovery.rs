//! The recovery scan (sans-I/O): walks the bytes of a segment batch by batch and says where the
//! valid prefix ends.
//!
//! The driver in `segment.rs` reads the file in chunks and feeds them to a [`Scanner`]; the
//! scanner validates every batch in full (length, magic, CRC-32C, record count, contiguous
//! offsets) and stops at the first one that fails. Everything after
//! that point is a torn or corrupt tail and is truncated by the caller.

use crate::record::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::types::{Epoch, Offset};

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
    /// The bytes ended exactly after a batch.
    Clean,
    /// Only zero bytes follow: the padding of the last direct-I/O block, not damage.
    ZeroPadding,
    /// A torn or corrupt batch starts at `position`; the reason says what failed.
    Invalid { position: u64, reason: String },
}

/// What the scanner wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Feed bytes again starting at file position `from`, at least `at_least` of them.
    NeedMore { from: u64, at_least: usize },
    /// The scan is over: the valid prefix ends at [`Scanner::position`].
    Done(ScanEnd),
}

/// Walks concatenated batches. `position` is the end of the valid prefix so far.
#[derive(Clone, Debug)]
pub struct Scanner {
    position: u64,
    next_offset: Option<Offset>,
    last_epoch: Epoch,
    batch_bytes_max: usize,
}

impl Scanner {
    /// Starts at file `position`; the first batch must start at offset `next_offset` when given.
    pub fn new(position: u64, next_offset: Option<Offset>, batch_bytes_max: usize) -> Self {
        Scanner {
            position,
            next_offset,
            last_epoch: Epoch(-1),
            batch_bytes_max,
        }
    }

    /// End of the valid prefix.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Leader epoch of the last valid batch (-1 before the first).
    pub fn last_epoch(&self) -> Epoch {
        self.last_epoch
    }

    /// Offset after the last valid batch, once one was seen (or the starting expectation).
    pub fn next_offset(&self) -> Option<Offset> {
        self.next_offset
    }

    /// Feeds `buf`, which holds the file's bytes from [`Scanner::position`] on; `at_eof` says the
    /// file ends at the end of `buf`. Calls `on_batch` for each valid batch.
    pub fn feed(
        &mut self,
        buf: &[u8],
        at_eof: bool,
        on_batch: &mut dyn FnMut(&ScannedBatch, &[u8]),
    ) -> Feed {
        let mut at = 0usize;
        loop {
            let rest = &buf[at..];
            if rest.is_empty() {
                if at_eof {
                    return Feed::Done(ScanEnd::Clean);
                }
                return Feed::NeedMore {
                    from: self.position,
                    at_least: BATCH_HEADER_BYTES,
                };
            }
            if rest.len() < BATCH_HEADER_BYTES {
                if at_eof {
                    return Feed::Done(self.invalid_or_padding(rest, "truncated batch header"));
                }
                return Feed::NeedMore {
                    from: self.position,
                    at_least: BATCH_HEADER_BYTES,
                };
            }
            let header = match BatchHeader::parse(rest) {
                Ok(h) => h,
                Err(e) => return Feed::Done(self.invalid_or_padding(rest, &e.to_string())),
            };
            let total = header.total_bytes();
            if total > self.batch_bytes_max {
                return Feed::Done(self.invalid(format!(
                    "batch of {total} bytes is over the {} byte limit",
                    self.batch_bytes_max
                )));
            }
            if rest.len() < total {
                if at_eof {
                    return Feed::Done(self.invalid(format!(
                        "torn batch: {total} bytes declared, {} present",
                        rest.len()
                    )));
                }
                return Feed::NeedMore {
                    from: self.position,
                    at_least: total,
                };
            }
            let bytes = &rest[..total];
            if let Err(e) = record::validate_batch(bytes, self.batch_bytes_max) {
                return Feed::Done(self.invalid(e.to_string()));
            }
            if header.base_offset < 0 {
                return Feed::Done(
                    self.invalid(format!("negative base offset {}", header.base_offset)),
                );
            }
            let base = Offset(header.base_offset as u64);
            if let Some(expected) = self.next_offset {
                if base != expected {
                    return Feed::Done(self.invalid(format!(
                        "batch starts at offset {base}, expected {expected}"
                    )));
                }
            }
            let scanned = ScannedBatch {
                position: self.position,
                header,
            };
            self.last_epoch = Epoch(header.partition_leader_epoch);
            on_batch(&scanned, bytes);
            self.next_offset = Some(scanned.next_offset());
            self.position += total as u64;
            at += total;
        }
    }

    fn invalid(&self, reason: String) -> ScanEnd {
        ScanEnd::Invalid {
            position: self.position,
            reason,
        }
    }

    fn invalid_or_padding(&self, rest: &[u8], reason: &str) -> ScanEnd {
        if rest.iter().all(|&b| b == 0) {
            ScanEnd::ZeroPadding
        } else {
            self.invalid(reason.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{set_base_offset, BatchBuilder};

    fn batch(base: u64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(1000);
        for i in 0..n {
            b.push(1000 + i as i64, None, Some(format!("v{i}").as_bytes()), &[]);
        }
        let mut bytes = b.finish().to_vec();
        set_base_offset(&mut bytes, base as i64);
        bytes
    }

    fn scan_all(buf: &[u8]) -> (Vec<ScannedBatch>, ScanEnd, u64) {
        let mut s = Scanner::new(0, Some(Offset(0)), 1 << 20);
        let mut seen = Vec::new();
        match s.feed(buf, true, &mut |b, _| seen.push(*b)) {
            Feed::Done(end) => (seen, end, s.position()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn clean_log_scans_to_the_end() {
        let mut log = batch(0, 3);
        log.extend(batch(3, 2));
        let (seen, end, pos) = scan_all(&log);
        assert_eq!(seen.len(), 2);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(pos, log.len() as u64);
    }

    #[test]
    fn zero_padding_is_not_damage() {
        let mut log = batch(0, 3);
        let len = log.len();
        log.resize(4096, 0);
        let (seen, end, pos) = scan_all(&log);
        assert_eq!(seen.len(), 1);
        assert_eq!(end, ScanEnd::ZeroPadding);
        assert_eq!(pos, len as u64);
    }

    #[test]
    fn gap_in_offsets_stops_the_scan() {
        let mut log = batch(0, 3);
        let first = log.len() as u64;
        log.extend(batch(7, 2));
        let (seen, end, pos) = scan_all(&log);
        assert_eq!(seen.len(), 1);
        assert!(matches!(end, ScanEnd::Invalid { position, .. } if position == first));
        assert_eq!(pos, first);
    }

    #[test]
    fn torn_tail_and_need_more() {
        let mut log = batch(0, 3);
        let first = log.len();
        log.extend(batch(3, 2));
        let (seen, end, _) = scan_all(&log[..log.len() - 5]);
        assert_eq!(seen.len(), 1);
        assert!(matches!(end, ScanEnd::Invalid { .. }));
        // Not at EOF: the scanner asks for the rest of the batch.
        let mut s = Scanner::new(0, None, 1 << 20);
        let feed = s.feed(&log[..first + 70], false, &mut |_, _| {});
        assert_eq!(
            feed,
            Feed::NeedMore {
                from: first as u64,
                at_least: log.len() - first
            }
        );
        let feed = s.feed(&log[first..], true, &mut |_, _| {});
        assert_eq!(feed, Feed::Done(ScanEnd::Clean));
        assert_eq!(s.next_offset(), Some(Offset(5)));
    }
}
