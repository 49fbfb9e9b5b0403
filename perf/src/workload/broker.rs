//! The embedded broker: `quill-perf` starts itself again as a child process running
//! `quill::broker::serve` on a fresh folder of the data directory, and stops it with SIGTERM at
//! the end (the broker's own clean shutdown), then removes the folder.
//!
//! A child process rather than a thread because `serve` returns only on a signal; a signal sent
//! to our own process would also reach the harness. The child also asks the kernel for SIGTERM
//! if the harness dies first, so no broker is left behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::datadir::RunDir;
use crate::error::{Context, PerfError, Result};

const READY_PREFIX: &str = "QUILL_PERF_BROKER_READY ";

/// A running embedded broker; [`EmbeddedBroker::stop`] ends it and removes its data.
pub struct EmbeddedBroker {
    child: Option<Child>,
    dir: Option<RunDir>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl EmbeddedBroker {
    /// Starts a broker with one shard per CPU of `cpus` under `root/run-<pid>/broker`.
    pub fn start(root: &Path, cpus: &[usize]) -> Result<EmbeddedBroker> {
        let dir = RunDir::create(root)?;
        if let Some(fs) = crate::datadir::memory_fs(dir.path())? {
            return Err(PerfError::msg(format!(
                "{} is on {fs}; pick a directory on a real disk with --dir",
                dir.path().display()
            )));
        }
        let data_dir = dir.path().join("broker");
        let log = dir.path().join("broker.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let exe = std::env::current_exe().context("find the quill-perf executable")?;
        let cpu_list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
        let mut child = Command::new(exe)
            .arg("embedded-broker")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--cpus")
            .arg(cpu_list.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .context("start the embedded broker")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut addr = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("read the embedded broker's output")?;
            if let Some(a) = line.strip_prefix(READY_PREFIX) {
                addr = Some(a.trim().parse::<SocketAddr>().context("broker address")?);
                break;
            }
        }
        let mut broker = EmbeddedBroker {
            child: Some(child),
            dir: Some(dir),
            addr: "127.0.0.1:0".parse().expect("valid address"),
            data_dir,
        };
        match addr {
            Some(a) => broker.addr = a,
            None => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = broker.stop();
                return Err(PerfError::msg(format!(
                    "the embedded broker exited before it was ready:\n{text}"
                )));
            }
        }
        Ok(broker)
    }

    /// The broker process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM, wait for the broker's clean exit, remove its folder.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let status = child.wait().context("wait for the embedded broker")?;
            if !status.success() {
                eprintln!("quill-perf: the embedded broker exited with {status}");
            }
        }
        if let Some(dir) = self.dir.take() {
            dir.remove()?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The hidden `embedded-broker` subcommand: the child side.
#[derive(clap::Args, Debug)]
pub struct EmbeddedBrokerArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Comma-separated CPUs, one shard each.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
}

pub fn serve_child(args: EmbeddedBrokerArgs) -> Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let config = quill::config::BrokerConfig {
        data_dir: args.data_dir,
        listen: "127.0.0.1:0".parse().expect("valid address"),
        shards: args.cpus.len(),
        cpus: args.cpus,
        ..Default::default()
    };
    quill::broker::serve(config, |l| {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{READY_PREFIX}{}", l.common);
        let _ = out.flush();
    })
    .map_err(|e| PerfError::msg(format!("embedded broker: {e}")))
}

/// User plus system CPU time of process `pid` so far (`/proc/<pid>/stat`), zero if unreadable.
pub fn process_cpu(pid: u32) -> std::time::Duration {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return std::time::Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else {
        return std::time::Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::time::Duration::from_millis(ticks * 1000 / hz)
}
