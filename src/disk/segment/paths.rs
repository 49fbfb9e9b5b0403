//! The files of a segment: their names (`<base offset, 20 digits>.log`, `.index`,
//! `.timeindex`) and their removal, off the shard's thread.

use std::path::{Path, PathBuf};

use crate::disk::error::LogError;
use crate::types::Offset;

pub(crate) fn log_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.log", base.0))
}

pub(crate) fn index_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.index", base.0))
}

pub(crate) fn time_index_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}.timeindex", base.0))
}

/// Parses `<20 digits>.log` into a base offset.
pub(crate) fn parse_log_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

/// Removes the three files of segment `base` (off the shard's thread: glommio's blocking pool).
/// A file already gone is fine; any other failure is logged, since the segment is out of the
/// log's state already and the next open drops leftovers.
pub(crate) async fn remove_files(dir: &Path, base: Offset) {
    for p in [
        log_path(dir, base),
        index_path(dir, base),
        time_index_path(dir, base),
    ] {
        remove_file(&p).await;
    }
}

/// Removes one file with glommio (run on its blocking thread, not the shard's). Missing is fine.
pub(super) async fn remove_file(path: &Path) {
    if let Err(e) = glommio::io::remove(path).await {
        let e = LogError::glommio("remove", path, e);
        if e.raw_os_error() != Some(libc::ENOENT) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove segment file");
        }
    }
}
