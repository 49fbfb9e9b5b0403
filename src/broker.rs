//! `quill serve`: starts one pinned glommio executor per shard, wires the cross-shard mesh and the
//! listeners, and shuts everything down cleanly on SIGINT or SIGTERM.
//!
//! The main thread owns no broker state: it starts the shard threads, hands them the port table
//! once every shard has bound its listeners, and waits for a signal or a shard failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::BrokerConfig;
use crate::net::{connections, server};
use crate::replication::driver::ShardLink;
use crate::replication::transport::{self, TlsFiles, Transport, TransportConfig};
use crate::shard::{build_mesh, MeshEnds, Ports, Shard};
use crate::types::ShardId;

/// Calls in flight from one shard to another before the sender waits.
const MESH_CALLS_MAX: usize = 1024;
/// How often a shard checks the shutdown flag.
const SHUTDOWN_POLL_MS: u64 = 50;

enum Event {
    Bound {
        shard: usize,
        common_port: u16,
        shard_port: u16,
    },
    Ready,
    /// Shutdown phase 1 done on this shard: no client request in flight.
    Drained(usize),
    Exited(usize, Result<(), String>),
    Signal(i32),
}

/// What the broker is listening on, printed once it is ready.
#[derive(Clone, Debug)]
pub struct Listening {
    pub common: SocketAddr,
    pub shard_ports: Vec<u16>,
}

/// Runs the broker until SIGINT/SIGTERM; `on_ready` is called once every shard serves.
pub fn serve(mut config: BrokerConfig, on_ready: impl FnOnce(&Listening)) -> Result<(), String> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    config.data_dir = absolute(&config.data_dir)?;
    // Held until this function returns: the process owns the directory until then.
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let cpus = choose_cpus(&config)?;
    let shards = cpus.len();
    if config.is_cluster() {
        check_cluster_dir(&config)?;
    } else {
        check_catalog(&config, shards)?;
    }
    raise_nofile_limit();
    config.check_shard_ports(shards)?;
    check_addresses_free(&config, shards)?;
    check_memlock(config.io_memory_bytes, shards);
    // A cluster node's replication thread (quinn on its own runtime), with one link per shard.
    let (transport, mut links) = if config.is_cluster() {
        let (t, links) = start_transport(&config, shards)?;
        (Some(t), links.into_iter().map(Some).collect())
    } else {
        (None, (0..shards).map(|_| None).collect::<Vec<_>>())
    };
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    let close = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = mpsc::channel::<Event>();
    let mut ends: Vec<Option<MeshEnds>> = build_mesh(shards, MESH_CALLS_MAX)
        .into_iter()
        .map(Some)
        .collect();
    let mut port_txs = Vec::new();
    let mut threads = Vec::new();
    let mut common = config.listen;
    let mut shard_ports = vec![0u16; shards];
    for (i, &cpu) in cpus.iter().enumerate() {
        let (port_tx, port_rx) = mpsc::channel::<Ports>();
        port_txs.push(port_tx);
        let cfg = config.clone();
        let stop2 = stop.clone();
        let close2 = close.clone();
        let tx = events_tx.clone();
        let mesh_ends = ends[i].take().expect("one mesh end per shard");
        let link = links[i].take();
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("quill-shard-{i}"))
            .io_memory(cfg.io_memory_bytes);
        let listen = common;
        let handle = builder
            .spawn(move || async move {
                let r = run_shard(
                    i,
                    shards,
                    cfg,
                    listen,
                    port_rx,
                    mesh_ends,
                    link,
                    Flags {
                        stop: stop2,
                        close: close2,
                    },
                    tx.clone(),
                )
                .await;
                let _ = tx.send(Event::Exited(i, r));
            })
            .map_err(|e| format!("cannot start shard {i} on CPU {cpu}: {e}"))?;
        threads.push(handle);
        // Shard 0 binds first so that a port-0 common address is resolved for the others.
        loop {
            match events
                .recv()
                .map_err(|_| "shard threads vanished".to_string())?
            {
                Event::Bound {
                    shard,
                    common_port,
                    shard_port,
                } if shard == i => {
                    common.set_port(common_port);
                    shard_ports[i] = shard_port;
                    break;
                }
                Event::Exited(s, r) => {
                    stop.store(true, Ordering::SeqCst);
                    return Err(format!(
                        "shard {s} failed to start: {}",
                        r.err().unwrap_or_default()
                    ));
                }
                _ => {}
            }
        }
    }
    let ports = Ports {
        host: config.advertised_host(),
        common_port: common.port(),
        shard_ports: shard_ports.clone(),
    };
    for tx in &port_txs {
        let _ = tx.send(ports.clone());
    }
    let mut ready = 0;
    while ready < shards {
        match events
            .recv()
            .map_err(|_| "shard threads vanished".to_string())?
        {
            Event::Ready => ready += 1,
            Event::Exited(s, r) => {
                stop.store(true, Ordering::SeqCst);
                for t in threads {
                    let _ = t.join();
                }
                return Err(format!(
                    "shard {s} failed to start: {}",
                    r.err().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    // Handlers first: a signal right after the ready line must shut down cleanly, not kill.
    let signal_tx = events_tx.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    on_ready(&Listening {
        common,
        shard_ports,
    });
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = signal_tx.send(Event::Signal(sig));
        }
    });
    // Two-phase shutdown: every shard first drains its clients (still serving calls from other
    // shards, whose clients may still be draining); once all have, they close their logs.
    let mut failure = None;
    let mut drained = vec![false; shards];
    let mut exited = vec![false; shards];
    while exited.iter().any(|e| !e) {
        match events.recv() {
            Ok(Event::Signal(sig)) => {
                tracing::info!(signal = sig, "shutting down");
                stop.store(true, Ordering::SeqCst);
            }
            Ok(Event::Drained(s)) => drained[s] = true,
            Ok(Event::Exited(s, r)) => {
                exited[s] = true;
                if let Err(e) = r {
                    tracing::error!(shard = s, error = %e, "shard failed");
                    failure.get_or_insert(format!("shard {s} failed: {e}"));
                }
                // One shard gone means the broker cannot serve its partitions: stop all.
                stop.store(true, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(_) => break,
        }
        if (0..shards).all(|s| drained[s] || exited[s]) {
            close.store(true, Ordering::SeqCst);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(t) = transport {
        t.shutdown();
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Shutdown flags the main thread sets and the shards poll.
struct Flags {
    /// Phase 1: stop taking client requests and drain.
    stop: Arc<AtomicBool>,
    /// Phase 2: every shard drained; close the logs.
    close: Arc<AtomicBool>,
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    i: usize,
    shards: usize,
    config: Arc<BrokerConfig>,
    common: SocketAddr,
    ports_rx: mpsc::Receiver<Ports>,
    mesh_ends: MeshEnds,
    link: Option<ShardLink>,
    flags: Flags,
    events: mpsc::Sender<Event>,
) -> Result<(), String> {
    let id = ShardId(i as u16);
    let common_listener =
        TcpListener::bind(common).map_err(|e| format!("cannot listen on {common}: {e}"))?;
    let shard_addr = SocketAddr::new(
        common.ip(),
        if config.shard_port_base == 0 {
            0
        } else {
            config.shard_port_base + i as u16
        },
    );
    let shard_listener =
        TcpListener::bind(shard_addr).map_err(|e| format!("cannot listen on {shard_addr}: {e}"))?;
    let common_port = common_listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let shard_port = shard_listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let _ = events.send(Event::Bound {
        shard: i,
        common_port,
        shard_port,
    });
    // Nothing else runs on this executor yet, so waiting here blocks nobody.
    let ports = ports_rx
        .recv()
        .map_err(|_| "broker stopped during start".to_string())?;
    let cfg = Rc::new((*config).clone());
    let shard = Shard::open(id, shards, cfg, ports, link).await?;
    let mesh = crate::shard::Mesh::connect(id, mesh_ends, Rc::downgrade(&shard)).await;
    shard.set_mesh(mesh);
    shard.start_cluster().await?;
    let conns = Rc::new(connections::Connections::new(&shard.config.limits));
    let trim = glommio::spawn_local(conns.clone().trim_loop());
    let accept_common = glommio::spawn_local(server::accept_loop(
        shard.clone(),
        common_listener,
        conns.clone(),
    ));
    let accept_shard = glommio::spawn_local(server::accept_loop(
        shard.clone(),
        shard_listener,
        conns.clone(),
    ));
    let retention = glommio::spawn_local(shard.clone().retention_loop());
    let _ = events.send(Event::Ready);
    while !flags.stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    // Phase 1: stop accepting and reading, let in-flight client requests finish.
    drop(accept_common);
    drop(accept_shard);
    drop(retention);
    drop(trim);
    conns.stop_reading();
    shard.drain().await;
    let _ = events.send(Event::Drained(i));
    // Phase 2, once every shard has drained: sync and close the logs.
    while !flags.close.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
    }
    shard.close().await;
    Ok(())
}

/// The data directory's lock, as Kafka's `.lock`: an exclusive `flock` on `DATA_DIR/.lock`,
/// held while the broker runs and released by the kernel when the process ends, however it ends.
/// A second broker on the same directory fails to take it and exits before touching anything.
struct DataDirLock {
    _file: std::fs::File,
}

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = ".lock";

impl DataDirLock {
    fn acquire(data_dir: &std::path::Path) -> Result<DataDirLock, String> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = data_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (process {holder})")
                };
                return Err(format!(
                    "the data directory {} is in use by another broker{who}: its lock {} is held",
                    data_dir.display(),
                    path.display()
                ));
            }
            return Err(format!("cannot lock {}: {err}", path.display()));
        }
        // Informational only: who holds the lock, for the message above.
        let _ = file.set_len(0);
        let _ = file.seek(std::io::SeekFrom::Start(0));
        let _ = writeln!(file, "{}", std::process::id());
        Ok(DataDirLock { _file: file })
    }
}

/// Refuses to start when another process listens on an address this broker needs. The shards
/// bind with `SO_REUSEPORT` (so that they share the common port), which would also let a second
/// process join the group and take a share of the connections. A plain bind cannot tell: it also
/// fails on the `TIME_WAIT` sockets a previous run left. So connect: only a listener accepts.
/// Port 0 asks for a fresh port and needs no check.
fn check_addresses_free(config: &BrokerConfig, shards: usize) -> Result<(), String> {
    let mut addrs = Vec::new();
    if config.listen.port() != 0 {
        addrs.push(config.listen);
    }
    if config.shard_port_base != 0 {
        for i in 0..shards {
            let port = u16::try_from(usize::from(config.shard_port_base) + i).map_err(|_| {
                format!(
                    "shard_port_base {} + shard {i} is over 65535",
                    config.shard_port_base
                )
            })?;
            addrs.push(SocketAddr::new(config.listen.ip(), port));
        }
    }
    for addr in addrs {
        let mut probe = addr;
        if probe.ip().is_unspecified() {
            probe.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if std::net::TcpStream::connect_timeout(&probe, Duration::from_secs(1)).is_ok() {
            return Err(format!(
                "cannot listen on {addr}: the address is in use by another process \
                 (is another broker running?)"
            ));
        }
    }
    Ok(())
}

/// Refuses to start on a missing catalog with partition directories on disk (or rebuilds it
/// with `--rebuild-catalog`), then settles every partition's placement for `shards` shards,
/// before any shard reads the catalog.
fn check_catalog(config: &BrokerConfig, shards: usize) -> Result<(), String> {
    let defaults =
        crate::shard::catalog::TopicConfig::from_log_config(&config.default_log_config()?);
    crate::shard::catalog::check_at_start(
        &config.data_dir,
        config.rebuild_catalog,
        &defaults,
        shards,
        crate::types::NodeId(config.node_id),
    )
}

/// A cluster node keeps its topics in the cluster metadata log: a data directory of a
/// single-node broker (its `catalog.json`) is refused rather than silently ignored.
fn check_cluster_dir(config: &BrokerConfig) -> Result<(), String> {
    let catalog = config.data_dir.join(crate::shard::catalog::CATALOG_FILE);
    if catalog.exists() {
        return Err(format!(
            "the data directory {} belongs to a single-node broker ({} exists); a cluster node \
             (--peers) needs a new data directory",
            config.data_dir.display(),
            catalog.display()
        ));
    }
    Ok(())
}

/// Starts the replication transport of a cluster node: one link per shard.
fn start_transport(
    config: &BrokerConfig,
    shards: usize,
) -> Result<(Transport, Vec<ShardLink>), String> {
    let node = crate::types::NodeId(config.node_id);
    let tls_dir = config
        .tls_dir
        .as_ref()
        .ok_or("a cluster node needs --tls-dir (create one with `quill cluster init-certs`)")?;
    let tls = TlsFiles::load(tls_dir, node).map_err(|e| e.to_string())?;
    let peers = config
        .peers
        .iter()
        .map(|p| (crate::types::NodeId(p.node), p.addr))
        .collect();
    let mut tc = TransportConfig::new(node, peers, tls, shards);
    tc.cpu = config.replication.cpu;
    tc.channel_messages_max = config.replication.channel_messages_max;
    let bind = config.peers.iter().find(|p| p.node == config.node_id);
    transport::start(tc).map_err(|e| {
        format!(
            "cannot start replication on {}: {e}",
            bind.map(|p| p.addr.to_string()).unwrap_or_default()
        )
    })
}

fn absolute(p: &std::path::Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
}

/// The CPUs shards are pinned to, one per shard.
fn choose_cpus(config: &BrokerConfig) -> Result<Vec<usize>, String> {
    let online: Vec<usize> = glommio::CpuSet::online()
        .map_err(|e| format!("cannot list CPUs: {e}"))?
        .into_iter()
        .map(|l| l.cpu)
        .collect();
    if !config.cpus.is_empty() {
        for c in &config.cpus {
            if !online.contains(c) {
                return Err(format!("CPU {c} is not online (online: {online:?})"));
            }
        }
        if config.shards != 0 && config.shards != config.cpus.len() {
            return Err(format!(
                "--shards {} does not match the {} CPUs given with --cpus",
                config.shards,
                config.cpus.len()
            ));
        }
        return Ok(config.cpus.clone());
    }
    let n = if config.shards == 0 {
        online.len()
    } else {
        config.shards
    };
    if n == 0 || n > 1024 {
        return Err(format!("invalid shard count {n}"));
    }
    // More shards than CPUs share CPUs round-robin (useful for tests on small machines).
    Ok((0..n).map(|i| online[i % online.len()]).collect())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs both: partitions hold file
/// descriptors (3 each), and the soft limit a shell hands down (often 1024) is far below what the
/// administrator allows. Each shard then sizes its share (`shard::FdBudget`).
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read RLIMIT_NOFILE");
        return;
    }
    let soft = lim.rlim_cur;
    if soft < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), soft, hard = lim.rlim_max,
                "cannot raise the file descriptor limit");
        }
    }
    tracing::info!(
        soft_was = soft,
        soft = lim.rlim_cur,
        hard = lim.rlim_max,
        "file descriptor limit (RLIMIT_NOFILE)"
    );
}

/// glommio registers `io_memory` in three rings per executor; over the memlock limit it runs
/// without registered buffers, so say so.
fn check_memlock(io_memory_bytes: usize, shards: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return;
    }
    let need = 3 * io_memory_bytes as u64 * shards as u64;
    if lim.rlim_cur != libc::RLIM_INFINITY && need > lim.rlim_cur {
        tracing::warn!(
            need_bytes = need,
            memlock_bytes = lim.rlim_cur,
            "3 x io_memory_bytes x shards exceeds the memlock limit (ulimit -l); \
             glommio will run without registered buffers. Lower io_memory_bytes or raise the limit."
        );
    }
}
