//! The torn-write rule of recovery: whether the bytes between a failed batch and the valid batch
//! after it can only be an unwritten stretch a crash left (cut as a torn tail) rather than media
//! damage (kept as a damaged range). See the module comment of `recovery`.

use crate::record::BatchHeader;
use crate::types::Offset;

/// A sector of zeros inside a failed stretch is the mark of a torn write (see the module
/// comment). 512 bytes is the smallest sector of any device.
pub const SECTOR_BYTES: u64 = 512;

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
