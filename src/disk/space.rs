//! Free space on the file system of a log directory, for preallocation to stay within it.
//!
//! `statvfs` is a synchronous call, but it reads counters the kernel keeps in memory (no disk
//! I/O), and it runs once per preallocation step (every few MiB of appends), in the
//! preallocation task, not on the append path.

use std::cell::Cell;
use std::path::Path;

thread_local! {
    /// Bytes this thread (one shard) is preallocating right now, not yet visible in
    /// `statvfs`: subtracted from what the next step may take, so the partitions of a shard
    /// stepping at the same moment do not all take the same free space. Shards do not share
    /// it (no cross-shard state), so the file system may go below `disk_reserve_bytes` by at
    /// most the other shards' steps in flight: `(shards - 1) x preallocate_bytes`.
    static IN_FLIGHT_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// A claim on free space for one preallocation step, released when dropped (the step is then
/// visible in `statvfs`, or failed).
pub(crate) struct Claim(u64);

impl Claim {
    /// Claims up to `want` bytes of `free` (the file system's free space less the reserve), less
    /// what this shard's other steps hold. Returns the claim and its size (possibly 0).
    pub(crate) fn take(free: u64, want: u64) -> (Claim, u64) {
        let held = IN_FLIGHT_BYTES.with(Cell::get);
        let n = want.min(free.saturating_sub(held));
        IN_FLIGHT_BYTES.with(|c| c.set(held + n));
        (Claim(n), n)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        IN_FLIGHT_BYTES.with(|c| c.set(c.get() - self.0));
    }
}

/// Bytes an unprivileged writer may still allocate on the file system holding `dir`.
pub(crate) fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a zeroed statvfs is a valid value for the call to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::Claim;

    #[test]
    fn concurrent_claims_share_the_free_space() {
        let (a, na) = Claim::take(10 << 20, 8 << 20);
        assert_eq!(na, 8 << 20);
        // A second step while the first is in flight sees only what is left.
        let (b, nb) = Claim::take(10 << 20, 8 << 20);
        assert_eq!(nb, 2 << 20);
        let (_c, nc) = Claim::take(10 << 20, 8 << 20);
        assert_eq!(nc, 0);
        drop(a);
        drop(b);
        let (_d, nd) = Claim::take(10 << 20, 8 << 20);
        assert_eq!(nd, 8 << 20);
    }

    #[test]
    fn reads_the_free_space_of_a_directory() {
        let free = super::available_bytes(std::path::Path::new("/")).unwrap();
        assert!(free > 0);
        assert!(super::available_bytes(std::path::Path::new("/no/such/dir")).is_err());
    }
}
