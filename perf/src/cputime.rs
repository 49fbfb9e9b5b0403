//! CPU time of the calling thread, of the whole process and of the machine, to tell a CPU-bound
//! run from a disk-bound one, and a quiet machine from a busy one.
//!
//! The process figure includes the kernel's io_uring worker threads (`iou-wrk-*`), which belong
//! to the process: that is where writes the file system cannot issue without blocking, and every
//! `fdatasync`, are executed.

use std::time::Duration;

/// User plus system CPU time used so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub thread: Duration,
    pub process: Duration,
    /// All CPUs of the machine, every process (from `/proc/stat`; zero if unreadable).
    pub machine: Duration,
}

impl CpuTimes {
    pub fn now() -> Self {
        CpuTimes {
            thread: rusage(libc::RUSAGE_THREAD),
            process: rusage(libc::RUSAGE_SELF),
            machine: machine_busy().unwrap_or_default(),
        }
    }

    /// CPU used since `earlier`, as a fraction of `wall` (1.0 is one core busy all the time).
    pub fn busy_since(&self, earlier: &CpuTimes, wall: Duration) -> CpuBusy {
        let frac = |a: Duration, b: Duration| {
            let w = wall.as_secs_f64();
            if w > 0.0 {
                a.saturating_sub(b).as_secs_f64() / w
            } else {
                0.0
            }
        };
        let machine = frac(self.machine, earlier.machine);
        let process = frac(self.process, earlier.process);
        CpuBusy {
            thread: frac(self.thread, earlier.thread),
            process,
            others: (machine - process).max(0.0),
        }
    }
}

/// CPU busy fractions over an interval: 1.0 is one core.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBusy {
    pub thread: f64,
    pub process: f64,
    /// Everything else on the machine (other processes, interrupts). Coarse: `/proc/stat` counts
    /// in clock ticks.
    pub others: f64,
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: `ru` is a properly sized out-parameter; getrusage only writes to it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        // Only EFAULT/EINVAL, impossible with these arguments; report no time rather than fail.
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Busy time of all CPUs since boot: the first line of `/proc/stat` less idle and iowait.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    if ticks.len() < 8 {
        return None;
    }
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7];
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    Some(Duration::from_secs_f64(busy as f64 / hz as f64))
}
