//! The direct-I/O appender of one segment file: stages appended bytes in aligned DMA buffers and
//! writes them in groups, rewriting the partial last block each time it grows.
//!
//! Lives on the shard that owns the partition. The appender is not itself async beyond
//! [`Appender::write_staged`]; the log's flusher task is the only caller of that, so at most one
//! group is in flight per segment.

use std::collections::VecDeque;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use super::config::DIO_ALIGN_BYTES;
use super::error::{LogError, Result};

const ALIGN: usize = DIO_ALIGN_BYTES as usize;

fn align_down(v: u64) -> u64 {
    v & !(DIO_ALIGN_BYTES - 1)
}

fn align_up(v: u64) -> u64 {
    align_down(v + DIO_ALIGN_BYTES - 1)
}

/// One aligned staging buffer and where it goes in the file.
struct Staged {
    buf: DmaBuffer,
    /// Aligned file position of `buf[0]`.
    file_pos: u64,
    /// Bytes of `buf` holding data (the carried partial block included).
    len: usize,
}

/// A group of writes taken by [`Appender::take_staged`], to be written together.
pub(crate) struct StagedGroup {
    writes: Vec<(DmaBuffer, u64)>,
    /// Logical end of the file once the group is written.
    end: u64,
    /// The partial last block of the group (bytes from `align_down(end)` to `end`).
    tail: Vec<u8>,
}

impl StagedGroup {
    pub(crate) fn end(&self) -> u64 {
        self.end
    }
}

pub(crate) struct Appender {
    file: Rc<DmaFile>,
    buffer_bytes: usize,
    /// Logical end of everything staged (the next append lands here).
    end: u64,
    /// Logical end of everything whose write completed.
    written: u64,
    /// Bytes from `align_down(written)` to `written`, as on the device.
    written_tail: Vec<u8>,
    full: VecDeque<Staged>,
    current: Staged,
}

impl Appender {
    /// An appender that continues the file at logical position `end`; `tail` holds the bytes from
    /// `align_down(end)` to `end` as they are on disk.
    pub(crate) fn resume(file: Rc<DmaFile>, buffer_bytes: usize, end: u64, tail: Vec<u8>) -> Self {
        assert_eq!(
            tail.len() as u64,
            end - align_down(end),
            "tail must be the partial block"
        );
        assert!(buffer_bytes % ALIGN == 0 && buffer_bytes >= ALIGN);
        let current = Self::new_staged(&file, buffer_bytes, end, &tail);
        Appender {
            file,
            buffer_bytes,
            end,
            written: end,
            written_tail: tail,
            full: VecDeque::new(),
            current,
        }
    }

    fn new_staged(file: &DmaFile, buffer_bytes: usize, end: u64, tail: &[u8]) -> Staged {
        let mut buf = file.alloc_dma_buffer(buffer_bytes);
        buf.as_bytes_mut()[..tail.len()].copy_from_slice(tail);
        Staged {
            buf,
            file_pos: align_down(end),
            len: tail.len(),
        }
    }

    /// Logical end of all written bytes.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn has_staged(&self) -> bool {
        self.end > self.written
    }

    /// Copies `data` into the staging buffers; it reaches the file with the next group write.
    pub(crate) fn stage(&mut self, mut data: &[u8]) {
        self.end += data.len() as u64;
        while !data.is_empty() {
            if self.current.len == self.buffer_bytes {
                let next_pos = self.current.file_pos + self.buffer_bytes as u64;
                let next = Self::new_staged(&self.file, self.buffer_bytes, next_pos, &[]);
                self.full
                    .push_back(std::mem::replace(&mut self.current, next));
            }
            let room = self.buffer_bytes - self.current.len;
            let n = room.min(data.len());
            let at = self.current.len;
            self.current.buf.as_bytes_mut()[at..at + n].copy_from_slice(&data[..n]);
            self.current.len += n;
            data = &data[n..];
        }
    }

    /// Takes every staged byte as one group of aligned writes. The partial last block is copied
    /// into the next staging buffer so later appends rewrite it whole.
    pub(crate) fn take_staged(&mut self) -> Option<StagedGroup> {
        if !self.has_staged() {
            return None;
        }
        let mut writes: Vec<(DmaBuffer, u64)> =
            self.full.drain(..).map(|s| (s.buf, s.file_pos)).collect();
        let tail_start = align_down(self.end);
        let tail_len = (self.end - tail_start) as usize;
        let cur_end = self.current.file_pos + self.current.len as u64;
        debug_assert_eq!(cur_end, self.end);
        let mut tail = Vec::with_capacity(tail_len);
        if self.current.len > 0 {
            let in_buf = (tail_start - self.current.file_pos) as usize;
            tail.extend_from_slice(&self.current.buf.as_bytes()[in_buf..in_buf + tail_len]);
            let next = Self::new_staged(&self.file, self.buffer_bytes, self.end, &tail);
            let mut cur = std::mem::replace(&mut self.current, next);
            let padded = align_up(cur.len as u64) as usize;
            cur.buf.as_bytes_mut()[cur.len..padded].fill(0);
            cur.buf.trim_to_size(padded);
            writes.push((cur.buf, cur.file_pos));
        }
        Some(StagedGroup {
            writes,
            end: self.end,
            tail,
        })
    }

    /// Records a group written by [`write_group`]: its bytes count as written.
    pub(crate) fn mark_written(&mut self, end: u64, tail: Vec<u8>) {
        assert!(
            end >= self.written && end <= self.end,
            "written end must stay within staged"
        );
        self.written = end;
        self.written_tail = tail;
    }

    /// Forgets everything staged or in a failed group: the appender continues at the last written
    /// position, as if those appends never happened.
    pub(crate) fn rollback(&mut self) {
        self.full.clear();
        self.current = Self::new_staged(
            &self.file,
            self.buffer_bytes,
            self.written,
            &self.written_tail,
        );
        self.end = self.written;
    }
}

/// Writes a group taken by [`Appender::take_staged`], all its writes in flight at once. Returns
/// the group's end and tail for [`Appender::mark_written`]. Takes the file handle rather than the
/// appender so that no borrow of the log state is held while the writes are in flight.
pub(crate) async fn write_group(
    file: Rc<DmaFile>,
    path: &std::path::Path,
    group: StagedGroup,
) -> Result<(u64, Vec<u8>)> {
    let tasks: Vec<_> = group
        .writes
        .into_iter()
        .map(|(buf, pos)| {
            let f = file.clone();
            glommio::spawn_local(async move { write_fully(&f, buf, pos).await })
        })
        .collect();
    let mut first_err = None;
    for task in tasks {
        if let Err(e) = task.await {
            first_err.get_or_insert_with(|| match e {
                WriteFault::Os(e) => LogError::glommio("write", path, e),
                WriteFault::Short(msg) => LogError::io(
                    "write",
                    path,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, msg),
                ),
            });
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((group.end, group.tail)),
    }
}

enum WriteFault {
    Os(glommio::GlommioError<()>),
    Short(String),
}

/// Writes all of `buf` at `pos`. A short write (the device filled up part way) is retried for the
/// rest, so the caller sees the OS error behind it (ENOSPC, EFBIG) rather than a bare count.
async fn write_fully(
    file: &DmaFile,
    buf: DmaBuffer,
    mut pos: u64,
) -> std::result::Result<(), WriteFault> {
    // Shared ownership lets us still see the bytes after a short write, without a copy up front.
    let mut buf = Rc::new(buf);
    loop {
        let want = buf.len();
        let n = file
            .write_rc_at(buf.clone(), pos)
            .await
            .map_err(WriteFault::Os)?;
        if n == want {
            return Ok(());
        }
        if n == 0 || n % ALIGN != 0 {
            return Err(WriteFault::Short(format!(
                "short direct write: {n} of {want} bytes"
            )));
        }
        let mut next = file.alloc_dma_buffer(want - n);
        next.as_bytes_mut().copy_from_slice(&buf.as_bytes()[n..]);
        buf = Rc::new(next);
        pos += n as u64;
    }
}

/// Reads the partial block before `end` from `file`, as needed by [`Appender::resume`].
pub(crate) async fn read_tail(file: &DmaFile, path: &std::path::Path, end: u64) -> Result<Vec<u8>> {
    let start = align_down(end);
    let len = (end - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let got = file
        .read_at_aligned(start, ALIGN)
        .await
        .map_err(|e| LogError::glommio("read", path.to_path_buf(), e))?;
    if got.len() < len {
        return Err(LogError::io(
            "read",
            path.to_path_buf(),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment shorter than expected",
            ),
        ));
    }
    Ok(got[..len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(0), 0);
    }
}
