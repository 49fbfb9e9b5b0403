//! Small checkpoint files beside a partition's segments, and how they are replaced atomically
//! without blocking the shard.
//!
//! `recovery-point-checkpoint` holds the partition's **recovery point** (Kafka's
//! `recovery-point-offset-checkpoint`, one file per partition here): an offset below which every
//! batch was covered by an `fdatasync` when the file was written. Recovery treats a failed batch
//! below it as media damage, never as a torn tail (`recovery.rs`). Text: a version line `0`, then
//! the offset. It is written from the log's checkpoint task every `recovery_point_interval_ms`
//! while the durable offset moves, when the log is closed, and lowered before a truncation
//! below it; never on the append path.
//!
//! [`replace_file`] writes any of these files (also `leader-epoch-checkpoint` and
//! `damaged-ranges`) through glommio: temporary file, write, `fdatasync`, rename, `fsync` of the
//! directory, so a crash leaves the old or the new file.

use std::path::Path;

use glommio::io::OpenOptions;

use super::error::{LogError, Result};
use crate::types::Offset;

pub const RECOVERY_POINT_FILE: &str = "recovery-point-checkpoint";

pub fn encode_recovery_point(offset: Offset) -> String {
    format!("0\n{}\n", offset.0)
}

pub fn decode_recovery_point(text: &str) -> std::result::Result<Offset, String> {
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err("unknown recovery-point-checkpoint version".into());
    }
    let offset = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("missing offset")?;
    if lines.next().is_some() {
        return Err("trailing lines".into());
    }
    Ok(Offset(offset))
}

/// Reads the recovery point of `dir`; a missing or unreadable file is `Offset::ZERO` (nothing
/// known durable: recovery falls back to telling a torn tail from damage by what follows it).
pub fn load_recovery_point(dir: &Path) -> Offset {
    let path = dir.join(RECOVERY_POINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode_recovery_point(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged recovery point");
            Offset::ZERO
        }),
        Err(_) => Offset::ZERO,
    }
}

/// Replaces `dir/name` with `bytes` durably, with glommio I/O only (the shard is not blocked).
/// Callers serialize writes of one file.
pub async fn replace_file(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let n = bytes.len() as u64;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&tmp)
        .await
        .map_err(|e| LogError::glommio("create", &tmp, e))?;
    let written = f
        .write_at(bytes, 0)
        .await
        .map_err(|e| LogError::glommio("write", &tmp, e))?;
    if written as u64 != n {
        let _ = f.close().await;
        return Err(LogError::io(
            "write",
            &tmp,
            std::io::Error::new(std::io::ErrorKind::WriteZero, "short checkpoint write"),
        ));
    }
    f.fdatasync()
        .await
        .map_err(|e| LogError::glommio("fdatasync", &tmp, e))?;
    f.close()
        .await
        .map_err(|e| LogError::glommio("close", &tmp, e))?;
    glommio::io::rename(&tmp, &path)
        .await
        .map_err(|e| LogError::glommio("rename", &path, e))?;
    super::segment::sync_dir(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_point_round_trip_and_rejects_damage() {
        let text = encode_recovery_point(Offset(1234));
        assert_eq!(text, "0\n1234\n");
        assert_eq!(decode_recovery_point(&text), Ok(Offset(1234)));
        assert!(decode_recovery_point("1\n5\n").is_err());
        assert!(decode_recovery_point("0\n").is_err());
        assert!(decode_recovery_point("0\n-3\n").is_err());
        assert!(decode_recovery_point("0\n5\n6\n").is_err());
    }
}
