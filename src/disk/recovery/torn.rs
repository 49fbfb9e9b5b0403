//! The torn-write rule of recovery: whether the bytes between a failed batch and the valid batch
//! after it can only be an unwritten stretch a crash left (cut as a torn tail) rather than media
//! damage (kept as a damaged range). See the module comment of `recovery`.

use crate::record::{validate_batch, BatchHeader};
use crate::types::Offset;

/// A sector of zeros inside a failed stretch is the mark of a torn write (see the module
/// comment). 512 bytes is the smallest sector of any device.
pub const SECTOR_BYTES: u64 = 512;

/// Where a batch header's length field ends: the base offset (8 bytes) and the length (4).
const LENGTH_FIELD_END: usize = 12;

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
/// block; such a run covers at least the batch's length field, which is never zero, since the
/// high bytes of any base offset are zeros anyway). Media damage flips bits and leaves the
/// batch's structure alone.
///
/// So the stretch is torn only if the failed batch is not structurally whole (a header that
/// parses, whose declared length leads exactly to the resuming batch, and whose offsets lead
/// there too or whose CRC still holds: then it is damage, even if its payload or the
/// offset fields outside the CRC hold zeros) and a run of zeros in it has that shape. A partial write that zeroed whole sectors inside an otherwise intact
/// batch therefore counts as damage: a range of never-acknowledged bytes reported as damaged,
/// which is the safe side (see the module comment).
pub fn torn_stretch(stretch: &[u8], start: u64, expected: Offset, base: Offset) -> bool {
    if let Ok(h) = BatchHeader::parse(stretch) {
        let fits = h.total_bytes() == stretch.len();
        let offsets_lead = h.base_offset >= 0
            && Offset(h.base_offset as u64) == expected
            && Offset(h.last_offset() as u64 + 1) == base;
        // A batch that fits exactly and whose CRC still holds was written whole: only the
        // fields outside the CRC (base offset, length, epoch) can differ, and zeros there
        // that end on a sector boundary are a flipped bit, not a lost write (which would
        // have zeroed CRC-covered bytes too).
        if fits && (offsets_lead || validate_batch(stretch, stretch.len()).is_ok()) {
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
        // From the batch's first byte, the run must cover the length field too: the high
        // bytes of a base offset are zeros in any batch, a length never is.
        let from_batch_start = a == 0 && i >= LENGTH_FIELD_END;
        if run_end % SECTOR_BYTES == 0 && (from_batch_start || run_start % SECTOR_BYTES == 0) {
            return true;
        }
    }
    false
}
