//! Works around glommio 0.9's io_uring poll-ring probe.
//!
//! glommio probes whether a device supports polled I/O with a read at offset 0 of the first DMA
//! file opened on that device, and caches the answer for the process. When that file is empty the
//! kernel answers the read with 0 bytes and no error, glommio concludes "pollable", and every later
//! read on the device fails with `EOPNOTSUPP` (os error 95). So before any segment is opened, open
//! a small non-empty marker file on the same device.

use std::path::Path;

use glommio::io::DmaFile;

use super::error::{LogError, Result};

/// Name of the marker file written in a data directory.
pub const PROBE_FILE_NAME: &str = ".quill-dio-probe";
const PROBE_BYTES: usize = 4096;

/// Opens (creating if needed) a non-empty marker file in `dir` with direct I/O and reads it, so
/// glommio's poll-ring probe for `dir`'s device sees real data. Call on each data directory at
/// shard start, before any other DMA file there.
pub async fn prime(dir: &Path) -> Result<()> {
    let path = dir.join(PROBE_FILE_NAME);
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() >= PROBE_BYTES as u64);
    if !ok {
        // Several shards may prime the same directory at once: each writes its own temporary
        // file and renames it into place (atomic), so they never trip over each other.
        let tmp = dir.join(format!(
            "{PROBE_FILE_NAME}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        // Off the shard's thread: glommio's blocking pool.
        let (d, t, p) = (dir.to_path_buf(), tmp.clone(), path.clone());
        glommio::executor()
            .spawn_blocking(move || {
                std::fs::create_dir_all(&d).map_err(|e| ("create directory", d, e))?;
                std::fs::write(&t, vec![b'Q'; PROBE_BYTES]).map_err(|e| ("write", t.clone(), e))?;
                std::fs::rename(&t, &p).map_err(|e| ("rename", p, e))
            })
            .await
            .map_err(|(op, path, e)| LogError::io(op, path, e))?;
    }
    let f = DmaFile::open(&path)
        .await
        .map_err(|e| LogError::glommio("open", &path, e))?;
    let got = f
        .read_at_aligned(0, PROBE_BYTES)
        .await
        .map_err(|e| LogError::glommio("read", &path, e))?;
    let n = got.len();
    drop(got);
    f.close()
        .await
        .map_err(|e| LogError::glommio("close", &path, e))?;
    if n != PROBE_BYTES {
        return Err(LogError::io(
            "read",
            &path,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "probe file read short"),
        ));
    }
    Ok(())
}
