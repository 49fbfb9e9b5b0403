//! The benchmark's data directory: one fresh `run-<pid>` folder per run, checked for a real disk,
//! removed at the end unless the user keeps it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, PerfError, Result};

/// `statfs` magic numbers of file systems held in memory, where O_DIRECT does not reach a disk
/// (glommio falls back to buffered I/O there without saying so).
const MEMORY_FS_MAGICS: [(i64, &str); 2] = [(0x0102_1994, "tmpfs"), (0x8584_58f6, "ramfs")];

/// The folder a run writes into, under the user's `--dir`.
pub struct RunDir {
    root: PathBuf,
    run: PathBuf,
    created_root: bool,
}

impl RunDir {
    /// Creates `<root>/run-<pid>`, refusing one that already exists. The path is made absolute:
    /// glommio 0.9 opens directories with `openat(-1, path)`, which fails (EBADF) on a relative
    /// path, and the log syncs its directory that way.
    pub fn create(root: &Path) -> Result<RunDir> {
        let created_root = !root.exists();
        std::fs::create_dir_all(root)
            .with_context(|| format!("create data directory {}", root.display()))?;
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("resolve data directory {}", root.display()))?;
        let run = root.join(format!("run-{}", std::process::id()));
        std::fs::create_dir(&run)
            .with_context(|| format!("create run directory {}", run.display()))?;
        Ok(RunDir {
            root,
            run,
            created_root,
        })
    }

    pub fn path(&self) -> &Path {
        &self.run
    }

    /// A fresh subfolder of the run for one case.
    pub fn case_dir(&self, name: &str) -> Result<PathBuf> {
        let p = self.run.join(name);
        std::fs::create_dir(&p).with_context(|| format!("create {}", p.display()))?;
        Ok(p)
    }

    /// Removes the run folder, and `--dir` too if this run created it and it is now empty.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.run)
            .with_context(|| format!("remove {}", self.run.display()))?;
        if self.created_root {
            let _ = std::fs::remove_dir(&self.root);
        }
        Ok(())
    }
}

/// The name of the in-memory file system `dir` is on, if it is on one.
pub fn memory_fs(dir: &Path) -> Result<Option<&'static str>> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| PerfError::msg(format!("{} contains a NUL byte", dir.display())))?;
    // SAFETY: `c` is a valid NUL-terminated path and `buf` is a properly sized out-parameter.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(PerfError::new(
            format!("statfs {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    let magic = buf.f_type as i64;
    Ok(MEMORY_FS_MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name))
}

/// Removes a case folder as soon as the case is done, so a long run does not fill the disk.
pub fn remove_case_dir(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))
}
