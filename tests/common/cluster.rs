//! A cluster of real `quill serve` processes on 127.0.0.1: certificates from `quill cluster
//! init-certs`, one data dir, client port and replication port per node, every node started with
//! `--node-id N --peers ... --tls-dir ...`. Nodes can be killed (SIGKILL), stopped and continued
//! (SIGSTOP/SIGCONT) and started again on the same ports and data dirs.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::broker::Broker;

/// One node of a [`Cluster`]: its fixed addresses, and the process when it runs.
pub struct Node {
    pub id: u32,
    pub data_dir: PathBuf,
    /// The client address, fixed at the first start so restarts keep it.
    pub listen: SocketAddr,
    /// The node's own replication (QUIC) address.
    pub replication: SocketAddr,
    pub broker: Option<Broker>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub certs: PathBuf,
    pub shards: usize,
    pub nodes: Vec<Node>,
    /// What node `i` is told the others' replication addresses are (a relay's front address
    /// when a test puts relays between them); `None`: their own addresses.
    pub peer_view: Option<Box<dyn Fn(u32, u32) -> SocketAddr>>,
    /// Extra `serve` arguments for every node.
    pub extra_args: Vec<String>,
}

/// A port free right now on 127.0.0.1 (UDP or TCP as asked); another process may take it
/// before the broker binds it, which the start then reports.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

impl Cluster {
    /// Makes the certificates and the nodes' addresses; starts nothing.
    pub fn new(dir: &Path, nodes: usize, shards: usize) -> Cluster {
        let certs = dir.join("certs");
        let status = Command::new(env!("CARGO_BIN_EXE_quill"))
            .args(["cluster", "init-certs"])
            .arg(&certs)
            .args(["--nodes", &nodes.to_string()])
            .status()
            .expect("run quill cluster init-certs");
        assert!(status.success(), "init-certs failed");
        let nodes = (1..=nodes as u32)
            .map(|id| Node {
                id,
                data_dir: dir.join(format!("node-{id}")),
                listen: SocketAddr::from(([127, 0, 0, 1], free_port(false))),
                replication: SocketAddr::from(([127, 0, 0, 1], free_port(true))),
                broker: None,
            })
            .collect();
        Cluster {
            dir: dir.to_path_buf(),
            certs,
            shards,
            nodes,
            peer_view: None,
            extra_args: Vec::new(),
        }
    }

    /// Starts every node.
    pub fn start(dir: &Path, nodes: usize, shards: usize) -> Cluster {
        let mut c = Cluster::new(dir, nodes, shards);
        for id in 1..=nodes as u32 {
            c.start_node(id);
        }
        c
    }

    /// The `--peers` value node `id` is started with.
    pub fn peers_for(&self, id: u32) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let addr = match &self.peer_view {
                    Some(view) if n.id != id => view(id, n.id),
                    _ => n.replication,
                };
                format!("{}@{}", n.id, addr)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Starts node `id` (again) on its ports and data dir; waits until it listens.
    pub fn start_node(&mut self, id: u32) {
        let peers = self.peers_for(id);
        let certs = self.certs.clone();
        let extra = self.extra_args.clone();
        let shards = self.shards;
        let node = self.node_mut(id);
        assert!(node.broker.is_none(), "node {id} is running");
        let listen = node.listen.to_string();
        let broker = Broker::start_on(&node.data_dir, shards, &listen, |cmd| {
            cmd.args(["--node-id", &id.to_string(), "--peers", &peers])
                .arg("--tls-dir")
                .arg(&certs)
                .args(&extra);
        });
        node.broker = Some(broker);
    }

    /// SIGKILL node `id` and wait for it.
    pub fn kill(&mut self, id: u32) {
        if let Some(b) = self.node_mut(id).broker.take() {
            b.kill();
        }
    }

    /// SIGTERM node `id`; asserts a clean exit.
    pub fn stop(&mut self, id: u32) {
        if let Some(b) = self.node_mut(id).broker.take() {
            b.stop();
        }
    }

    /// SIGSTOP (`pause`) or SIGCONT node `id`.
    pub fn pause(&mut self, id: u32, pause: bool) {
        let b = self.node(id).broker.as_ref().expect("node runs");
        let sig = if pause { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(b.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// The client addresses of the running nodes.
    pub fn bootstrap(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|n| n.broker.is_some())
            .map(|n| n.listen)
            .collect()
    }

    /// The ids of the running nodes.
    pub fn running(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|n| n.broker.is_some())
            .map(|n| n.id)
            .collect()
    }
}
