//! A log's small metadata files beside its segments, as the log uses them: the leader-epoch
//! checkpoint, the damaged ranges and the recovery point (their encodings are in `epochs.rs`,
//! `damage.rs` and `checkpoint.rs`). Loaded at open; replaced with glommio I/O
//! (`checkpoint::replace_file`), so the shard is never blocked; and the checkpoint task that
//! writes the recovery point `recovery_point_interval_ms` after the durable offset moves.
//!
//! Runs on the log's shard.

use std::path::Path;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::checkpoint::{self, RECOVERY_POINT_FILE};
use super::damage::{DamageTable, DAMAGED_RANGES_FILE};
use super::epochs::{EpochCache, EPOCH_CHECKPOINT_FILE};
use super::error::{LogError, Result};
use super::state::Inner;

/// Reads `damaged-ranges` at open; a damaged file is ignored (recovery and reads find the ranges
/// again).
pub(crate) fn load_damage(dir: &Path) -> DamageTable {
    let path = dir.join(DAMAGED_RANGES_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => DamageTable::decode(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged damaged-ranges file");
            DamageTable::default()
        }),
        Err(_) => DamageTable::default(),
    }
}

/// Persists the damaged ranges (serialized with the other checkpoint files).
pub(crate) async fn store_damage(inner: &Rc<Inner>) -> Result<()> {
    let _files = inner
        .files_lock
        .acquire_permit(1)
        .await
        .map_err(|_| LogError::Closed)?;
    write_damage_file(inner).await
}

/// Writes `damaged-ranges`; the caller holds `files_lock`.
pub(crate) async fn write_damage_file(inner: &Rc<Inner>) -> Result<()> {
    let text = inner.state.borrow().damage.encode();
    checkpoint::replace_file(&inner.dir, DAMAGED_RANGES_FILE, text.into_bytes()).await
}

/// Reads `leader-epoch-checkpoint` at open; a damaged file is ignored.
pub(crate) fn load_epochs(dir: &Path) -> EpochCache {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => EpochCache::decode(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged epoch checkpoint");
            EpochCache::default()
        }),
        Err(_) => EpochCache::default(),
    }
}

/// Writes the epoch checkpoint durably (temporary file, `fdatasync`, rename, `fsync` of the
/// directory), with glommio I/O. Callers never run two at once for one log: open runs before
/// anything else, an epoch change holds `State::epoch_changing`, a truncation holds the pipeline
/// quiet with appends waiting.
pub(crate) async fn store_epochs(dir: &Path, epochs: &EpochCache) -> Result<()> {
    checkpoint::replace_file(dir, EPOCH_CHECKPOINT_FILE, epochs.encode().into_bytes()).await
}

/// Starts the checkpoint task once the durable offset has passed the recovery point, unless one
/// waits already: it writes the recovery point `recovery_point_interval_ms` later. The task
/// holds only a weak handle while it waits, so a dropped log is not kept open.
pub(crate) fn schedule_checkpoint(inner: &Rc<Inner>) {
    {
        let mut st = inner.state.borrow_mut();
        if st.checkpoint_scheduled || st.closed || st.commit.durable() <= st.recovery_point {
            return;
        }
        st.checkpoint_scheduled = true;
    }
    let weak: Weak<Inner> = Rc::downgrade(inner);
    let delay = Duration::from_millis(inner.config.recovery_point_interval_ms);
    glommio::spawn_local(async move {
        glommio::timer::sleep(delay).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.state.borrow_mut().checkpoint_scheduled = false;
        if inner.state.borrow().closed {
            return;
        }
        if let Err(e) = write_recovery_point(&inner).await {
            tracing::warn!(dir = %inner.dir.display(), error = %e,
                "cannot write the recovery-point checkpoint; retried later");
        }
        schedule_checkpoint(&inner);
    })
    .detach();
}

/// Writes the durable offset as the recovery point, if it moved.
pub(crate) async fn write_recovery_point(inner: &Rc<Inner>) -> Result<()> {
    let _files = inner
        .files_lock
        .acquire_permit(1)
        .await
        .map_err(|_| LogError::Closed)?;
    let target = {
        let st = inner.state.borrow();
        if st.commit.durable() <= st.recovery_point {
            return Ok(());
        }
        st.commit.durable()
    };
    checkpoint::replace_file(
        &inner.dir,
        RECOVERY_POINT_FILE,
        checkpoint::encode_recovery_point(target).into_bytes(),
    )
    .await?;
    let mut st = inner.state.borrow_mut();
    st.recovery_point = st.recovery_point.max(target);
    st.counters.checkpoints += 1;
    Ok(())
}
