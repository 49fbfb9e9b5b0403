//! The direct-I/O side of staging: glommio's aligned [`DmaBuffer`] as the appender's
//! [`StageBuf`], the write of one slot ([`write_fully`], short writes retried) and the read of
//! the partial block a segment ends with ([`read_tail`]).
//!
//! Used on the log's shard by the commit pipeline (`commit.rs`), recovery and truncation.

use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use super::appender::{align_down, StageBuf};
use super::config::DIO_ALIGN_BYTES;
use super::error::{LogError, Result};

const ALIGN: usize = DIO_ALIGN_BYTES as usize;

impl StageBuf for DmaBuffer {
    /// From the heap, not from the executor's registered I/O memory: staging buffers are kept for
    /// the life of the log.
    fn staging(len: usize) -> Self {
        glommio::allocate_dma_buffer_global(len)
    }

    /// From the executor's registered I/O memory when it has room (written once, then freed).
    fn tail(len: usize) -> Self {
        glommio::allocate_dma_buffer(len)
    }

    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
}

/// Why a write failed.
pub(crate) enum WriteFault {
    Os(glommio::GlommioError<()>),
    Short(String),
}

impl WriteFault {
    pub(crate) fn into_error(self, path: &std::path::Path) -> LogError {
        match self {
            WriteFault::Os(e) => LogError::glommio("write", path, e),
            WriteFault::Short(msg) => LogError::io(
                "write",
                path,
                std::io::Error::new(std::io::ErrorKind::WriteZero, msg),
            ),
        }
    }
}

/// Writes all of `buf` at `pos`. A short write (the device filled up part way) is retried for the
/// rest, so the caller sees the OS error behind it (ENOSPC, EFBIG) rather than a bare count.
/// Holds no clone of `buf` once it returns, so the caller can take the buffer back.
pub(crate) async fn write_fully(
    file: &DmaFile,
    buf: Rc<DmaBuffer>,
    mut pos: u64,
) -> std::result::Result<(), WriteFault> {
    let want = buf.len();
    let n = file
        .write_rc_at(buf.clone(), pos)
        .await
        .map_err(WriteFault::Os)?;
    if n == want {
        return Ok(());
    }
    // The rare path: copy the rest into a buffer of its own and retry.
    let mut done = n;
    let mut rest_buf = buf;
    loop {
        if done == 0 || done % ALIGN != 0 {
            return Err(WriteFault::Short(format!(
                "short direct write: {done} of {want} bytes"
            )));
        }
        let mut next = glommio::allocate_dma_buffer(rest_buf.len() - done);
        next.as_bytes_mut()
            .copy_from_slice(&rest_buf.as_bytes()[done..]);
        pos += done as u64;
        rest_buf = Rc::new(next);
        let len = rest_buf.len();
        let n = file
            .write_rc_at(rest_buf.clone(), pos)
            .await
            .map_err(WriteFault::Os)?;
        if n == len {
            return Ok(());
        }
        done = n;
    }
}

/// Reads the partial block before `end` from `file`, as needed by [`Appender::resume`] and
/// [`Appender::rollback`].
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

/// Cuts a segment file to `size` bytes and syncs it, so the cut is durable (a close, a
/// rollback, a truncation).
pub(crate) async fn truncate_synced(
    file: &DmaFile,
    path: &std::path::Path,
    size: u64,
) -> Result<()> {
    file.truncate(size)
        .await
        .map_err(|e| LogError::glommio("truncate", path, e))?;
    file.fdatasync()
        .await
        .map_err(|e| LogError::glommio("fdatasync", path, e))
}
