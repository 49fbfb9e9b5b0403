//! The index files of a segment on disk: loaded (and checked) at open, appended to after each
//! sync while the segment is active, written whole when it is sealed, recovered or closed.

use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, OpenOptions};

use super::paths::{index_path, time_index_path};
use crate::disk::error::{LogError, Result};
use crate::disk::index::{OffsetIndex, TimeIndex};
use crate::types::Offset;

/// Loads and checks both index files; `None` when either is missing or invalid.
pub(super) fn load_indexes(
    dir: &Path,
    base: Offset,
    log_bytes: u64,
) -> Option<(OffsetIndex, TimeIndex)> {
    let ib = std::fs::read(index_path(dir, base)).ok()?;
    let tb = std::fs::read(time_index_path(dir, base)).ok()?;
    let ix = OffsetIndex::decode(&ib, log_bytes)
        .map_err(
            |e| tracing::warn!(dir = %dir.display(), base = %base, error = %e, "bad offset index"),
        )
        .ok()?;
    let ti = TimeIndex::decode(&tb)
        .map_err(
            |e| tracing::warn!(dir = %dir.display(), base = %base, error = %e, "bad time index"),
        )
        .ok()?;
    Some((ix, ti))
}

async fn open_index_file(path: &Path) -> Result<BufferedFile> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(|e| LogError::glommio("open", path, e))
}

/// The open index files of a segment that is still being appended to.
pub(crate) struct IndexFiles {
    index: BufferedFile,
    time: BufferedFile,
    index_path: PathBuf,
    time_path: PathBuf,
}

impl IndexFiles {
    pub(crate) async fn open(dir: &Path, base: Offset) -> Result<IndexFiles> {
        let index_path = index_path(dir, base);
        let time_path = time_index_path(dir, base);
        Ok(IndexFiles {
            index: open_index_file(&index_path).await?,
            time: open_index_file(&time_path).await?,
            index_path,
            time_path,
        })
    }

    /// Closes both files (awaited, so their descriptors are gone when this returns).
    pub(crate) async fn close(self) {
        let _ = self.index.close().await;
        let _ = self.time.close().await;
    }

    /// Writes the entries of `delta` (from [`Segment::index_delta`]) at their positions; with
    /// `truncate`, also cuts the files there (after a rollback or truncation removed entries).
    /// Index files are derived data: not synced on the append path, checked against the log by
    /// recovery.
    pub(crate) async fn write_delta(
        &self,
        delta: (Vec<u8>, u64, Vec<u8>, u64),
        truncate: bool,
    ) -> Result<()> {
        let (ib, ipos, tb, tpos) = delta;
        for (f, path, bytes, pos) in [
            (&self.index, &self.index_path, ib, ipos),
            (&self.time, &self.time_path, tb, tpos),
        ] {
            let n = bytes.len();
            if truncate {
                f.truncate(pos)
                    .await
                    .map_err(|e| LogError::glommio("truncate", path, e))?;
            }
            if n > 0 {
                let w = f
                    .write_at(bytes, pos)
                    .await
                    .map_err(|e| LogError::glommio("write", path, e))?;
                if w != n {
                    return Err(LogError::io(
                        "write",
                        path,
                        std::io::Error::new(std::io::ErrorKind::WriteZero, "short index write"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Both index files of a segment, encoded whole, ready for [`write_index_files`].
pub(crate) struct IndexImage {
    pub(super) dir: PathBuf,
    pub(super) base: Offset,
    pub(super) index: Vec<u8>,
    pub(super) time: Vec<u8>,
}

/// Writes both index files whole and syncs them (sealing, recovery, close).
pub(crate) async fn write_index_files(image: IndexImage) -> Result<()> {
    let IndexImage {
        dir,
        base,
        index: ib,
        time: tb,
    } = image;
    for (path, bytes) in [
        (index_path(&dir, base), ib),
        (time_index_path(&dir, base), tb),
    ] {
        let f = open_index_file(&path).await?;
        let n = bytes.len() as u64;
        if n > 0 {
            f.write_at(bytes, 0)
                .await
                .map_err(|e| LogError::glommio("write", &path, e))?;
        }
        f.truncate(n)
            .await
            .map_err(|e| LogError::glommio("truncate", &path, e))?;
        f.fdatasync()
            .await
            .map_err(|e| LogError::glommio("fdatasync", &path, e))?;
        f.close()
            .await
            .map_err(|e| LogError::glommio("close", &path, e))?;
    }
    Ok(())
}
