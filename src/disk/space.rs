//! Free space on the file system of a log directory, for preallocation to stay within it.
//!
//! `statvfs` is a synchronous call, but it reads counters the kernel keeps in memory (no disk
//! I/O), and it runs once per preallocation step (every few MiB of appends), in the
//! preallocation task, not on the append path.

use std::path::Path;

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
    #[test]
    fn reads_the_free_space_of_a_directory() {
        let free = super::available_bytes(std::path::Path::new("/")).unwrap();
        assert!(free > 0);
        assert!(super::available_bytes(std::path::Path::new("/no/such/dir")).is_err());
    }
}
