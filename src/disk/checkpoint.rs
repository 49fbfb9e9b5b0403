//! Small checkpoint files beside a partition's segments, and how they are replaced atomically
//! without blocking the shard.
//!
//! `recovery-point-checkpoint` holds the partition's **recovery point** (Kafka's
//! `recovery-point-offset-checkpoint`, one file per partition here): an offset below which every
//! batch was covered by an `fdatasync` when the file was written. Recovery treats a failed batch
//! below it as media damage, never as a torn tail (`recovery/`). Text: a version line `0`, then
//! the offset. It is written from the log's checkpoint task every `recovery_point_interval_ms`
//! while the durable offset moves, when the log is closed, and lowered before a truncation
//! below it; never on the append path.
//!
//! Version `1` of these files (`recovery-point-checkpoint`, `damaged-ranges`) ends with a line
//! `crc32c <8 hex digits>` over every byte before it, so a flipped bit in a number that still
//! parses (a recovery point of 5234 instead of 1234 would make recovery invent durable offsets)
//! is refused, not believed. Version `0` files, written before the line existed, are read
//! without it but may hold no line beyond their content, so a version digit flipped from `1`
//! to `0` is refused as well.
//!
//! [`replace_file`] writes any of these files (also `leader-epoch-checkpoint` and
//! `damaged-ranges`) through glommio: temporary file, write, `fdatasync`, rename, `fsync` of the
//! directory, so a crash leaves the old or the new file.

use std::path::Path;

use glommio::io::OpenOptions;

use super::error::{LogError, Result};
use crate::types::Offset;

pub const RECOVERY_POINT_FILE: &str = "recovery-point-checkpoint";

/// Appends the `crc32c` line to `body` (a version `1` file's content, ending in a newline).
pub fn seal(mut body: String) -> String {
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("crc32c {crc:08x}\n"));
    body
}

/// Checks a checkpoint file's version and, for version `1`, its `crc32c` line; returns the
/// version and the content without the line.
pub fn unseal(text: &str) -> std::result::Result<(u8, &str), String> {
    match text.split('\n').next() {
        Some("0") => Ok((0, text)),
        Some("1") => {
            let body_end = text
                .trim_end_matches('\n')
                .rfind('\n')
                .map(|i| i + 1)
                .ok_or("missing crc32c line")?;
            let (body, line) = text.split_at(body_end);
            let want = line
                .strip_prefix("crc32c ")
                .and_then(|h| h.strip_suffix('\n'))
                .ok_or("missing crc32c line")?;
            // Compared as text: the exact line `seal` writes, so no flipped bit (a hex digit's
            // case, a trailing byte) passes.
            let got = format!("{:08x}", crc32c::crc32c(body.as_bytes()));
            if got != want {
                return Err(format!(
                    "crc32c mismatch: the file says {want:?}, its content is {got}"
                ));
            }
            Ok((1, body))
        }
        _ => Err("unknown version".into()),
    }
}

pub fn encode_recovery_point(offset: Offset) -> String {
    seal(format!("1\n{}\n", offset.0))
}

pub fn decode_recovery_point(text: &str) -> std::result::Result<Offset, String> {
    let (_, body) = unseal(text)?;
    let mut lines = body.lines().skip(1);
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
    let _fds = super::files::transient_fds(super::files::CHECKPOINT_FDS).await?;
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
    sync_dir(dir).await
}

/// Makes a directory entry (a created or removed file) durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| LogError::glommio("open directory", dir, e))?;
    d.sync()
        .await
        .map_err(|e| LogError::glommio("fsync directory", dir, e))?;
    d.close()
        .await
        .map_err(|e| LogError::glommio("close directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_point_round_trip_and_rejects_damage() {
        let text = encode_recovery_point(Offset(1234));
        assert!(text.starts_with("1\n1234\ncrc32c "), "{text}");
        assert_eq!(decode_recovery_point(&text), Ok(Offset(1234)));
        // Version 0, written before the crc32c line, is still read.
        assert_eq!(decode_recovery_point("0\n1234\n"), Ok(Offset(1234)));
        assert!(decode_recovery_point("1\n5\n").is_err());
        assert!(decode_recovery_point("2\n5\n").is_err());
        assert!(decode_recovery_point("0\n").is_err());
        assert!(decode_recovery_point("0\n-3\n").is_err());
        assert!(decode_recovery_point("0\n5\n6\n").is_err());
    }

    /// Review of issue 9, finding 7: every single flipped bit of a recovery-point file is
    /// refused (one that still parsed moved the recovery point and invented durable offsets).
    #[test]
    fn every_flipped_bit_of_a_recovery_point_is_refused() {
        let text = encode_recovery_point(Offset(1234));
        let bytes = text.as_bytes();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.to_vec();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(t) = std::str::from_utf8(&b) {
                assert!(decode_recovery_point(t).is_err(), "bit {i}: {t:?}");
            }
        }
    }
}
