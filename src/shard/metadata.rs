//! The cluster metadata group on shard 0 of every node (`quill serve --peers`): one Raft group
//! over all the nodes (as Redpanda's raft0 or Kafka's KRaft), its log in
//! `DATA_DIR/cluster-metadata/`, each entry a batch of `metadata::Command`s.
//!
//! - Every node applies the committed commands in log order to its [`ClusterMeta`] (the apply
//!   loop, [`MetadataGroup::run`]) and sends the result to all its shards
//!   ([`super::replicas::ClusterUpdate`]). A restart replays the whole log.
//! - The metadata leader is the controller: topic create and delete are proposed there
//!   ([`Shard::cluster_create`], [`Shard::cluster_delete`]) and answered once applied.
//! - Other nodes send their commands (a node registering, a partition leader reporting) to the
//!   leader as `WireMessage::Propose`; only those two kinds are taken from the network.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::call::{Call, Reply, TopicRequest};
use super::core::Shard;
use super::error::TopicError;
use super::placement::Placement;
use super::replicas::{now_ms, ClusterState, ClusterUpdate};
use crate::disk::{system_clock, LogOptions, PartitionLog};
use crate::local::Event;
use crate::record::BatchHeader;
use crate::replication::driver::{Group, LeaderHook, Net};
use crate::replication::message::{GroupId, WireMessage};
use crate::replication::metadata::{assign, command, ClusterMeta, Command, NodeInfo, Outcome};
use crate::replication::raft::{Acks, ProposeError};
use crate::types::{NodeId, Offset, ShardId, TopicPartition};

/// The topic id of the metadata group (no topic gets it).
pub(crate) const METADATA_TOPIC_ID: u32 = u32::MAX;
/// The metadata log's directory inside the data directory.
pub const METADATA_DIR: &str = "cluster-metadata";
/// Bytes of the metadata log read per step of the apply loop.
const APPLY_READ_BYTES: usize = 1 << 20;
/// Outcomes kept for proposers that have not collected them yet.
const OUTCOMES_MAX: usize = 4096;
/// How often a node checks that its registration is current.
const REGISTER_PERIOD: Duration = Duration::from_millis(300);
/// How long a topic create waits for enough nodes to register.
const REGISTRATION_WAIT: Duration = Duration::from_secs(3);
/// How long a topic create or delete waits for the metadata group to commit and apply it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a topic create waits for its partitions' first leaders before answering anyway.
const CREATE_LEADERS_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn metadata_group_id() -> GroupId {
    GroupId::new(METADATA_TOPIC_ID, 0)
}

pub(crate) struct MetadataGroup {
    pub(crate) group: Rc<Group>,
    node: NodeId,
    net: Rc<Net>,
    /// The next offset of the metadata log to apply.
    applied: Cell<Offset>,
    pub(crate) state: RefCell<ClusterMeta>,
    /// What applying each batch did, by its base offset, for the proposer.
    outcomes: RefCell<BTreeMap<u64, Vec<Outcome>>>,
    /// Notified after every applied step.
    applied_event: Rc<Event>,
    closed: Cell<bool>,
}

impl MetadataGroup {
    /// Opens the metadata log and starts the group; voters are every node of `--peers`, each on
    /// its shard 0.
    pub(crate) async fn open(shard: &Rc<Shard>, cs: &ClusterState) -> Result<Rc<Self>, String> {
        let config = &shard.config;
        let mut log_config = config.default_log_config()?;
        // The metadata log is the cluster's record: kept whole, synced before it counts.
        log_config.retention_ms = None;
        log_config.retention_bytes = None;
        log_config.durability = crate::disk::Durability::Sync;
        let log_config = config.log_config_for(log_config)?;
        let dir = shard.data_dir.join(METADATA_DIR);
        let options = LogOptions {
            config: log_config,
            cache: shard.cache.clone(),
            files: shard.files.clone(),
            clock: system_clock(),
        };
        let (log, report) = PartitionLog::open(&dir, options)
            .await
            .map_err(|e| format!("cannot open the metadata log {}: {e}", dir.display()))?;
        if !report.corrupt.is_empty() {
            return Err(format!(
                "the metadata log {} has damaged ranges: {:?}",
                dir.display(),
                report.corrupt
            ));
        }
        let mut voters: Vec<(NodeId, ShardId)> = config
            .peers
            .iter()
            .map(|p| (NodeId(p.node), ShardId(0)))
            .collect();
        voters.sort();
        let placement = Placement::replicated(&voters);
        let wake = Rc::new(Event::new());
        let w = wake.clone();
        let hook: LeaderHook = Rc::new(move |_g, _v| w.notify());
        let group = Group::start(
            TopicPartition::new("__cluster_metadata", 0),
            metadata_group_id(),
            shard.me(),
            placement,
            cs.cfg.clone(),
            Rc::new(log),
            cs.repl.net.clone(),
            Some(hook),
        )
        .await?;
        group.never_quiesce();
        Ok(Rc::new(MetadataGroup {
            group,
            node: shard.me(),
            net: cs.repl.net.clone(),
            applied: Cell::new(Offset(0)),
            state: RefCell::new(ClusterMeta::default()),
            outcomes: RefCell::new(BTreeMap::new()),
            applied_event: wake,
            closed: Cell::new(false),
        }))
    }

    /// Proposes `batch` if this node leads; otherwise sends it to the leader (if known).
    pub(crate) fn forward(&self, batch: Bytes) {
        if self.group.is_leader() {
            if let Err(e) = self.group.submit(BytesMut::from(&batch[..]), Acks::Leader) {
                tracing::debug!(error = %e, "metadata proposal refused");
            }
            return;
        }
        if let Some(l) = self.group.leader().leader.filter(|&l| l != self.node) {
            self.net.send(
                l,
                ShardId(0),
                metadata_group_id(),
                &WireMessage::Propose(batch),
            );
        }
    }

    /// A batch another node sent: proposed if this node leads and it holds only what nodes
    /// may send (registrations, leader reports).
    fn take_forwarded(&self, from: NodeId, batch: Bytes) {
        let ok = command::decode(&batch).is_ok_and(|cs| {
            !cs.is_empty()
                && cs.iter().all(|c| match c {
                    Command::RegisterNode(info) => info.node == from.0,
                    Command::PartitionLeader { node, .. } => *node == from.0,
                    _ => false,
                })
        });
        if !ok {
            tracing::warn!(%from, "metadata proposal from a peer refused: not a registration or leader report of its own");
            return;
        }
        if self.group.is_leader() {
            self.forward(batch);
        }
    }

    /// Proposes `commands` as the metadata leader and returns what applying them did, once
    /// applied here (bounded by `timeout`).
    async fn propose(
        &self,
        commands: &[Command],
        timeout: Duration,
    ) -> Result<Vec<Outcome>, TopicError> {
        let deadline = Instant::now() + timeout;
        let batch = command::encode(commands, now_ms());
        let proposed = futures_lite::future::or(
            async { Some(self.group.propose(batch, Acks::All).await) },
            async {
                glommio::timer::sleep(timeout).await;
                None
            },
        )
        .await;
        let p = match proposed {
            None => return Err(TopicError::TimedOut),
            Some(Err(ProposeError::NotLeader { leader })) => {
                return Err(TopicError::NotController {
                    controller: leader.map(|l| NodeId(l as u32)),
                })
            }
            Some(Err(e)) => return Err(TopicError::Metadata(e.to_string())),
            Some(Ok(p)) => p,
        };
        loop {
            let listen = self.applied_event.listen();
            if self.applied.get().0 > p.last_offset {
                return self
                    .outcomes
                    .borrow_mut()
                    .remove(&p.base_offset)
                    .ok_or_else(|| TopicError::Metadata("the outcome was not kept".into()));
            }
            let now = Instant::now();
            if now >= deadline || self.closed.get() {
                return Err(TopicError::TimedOut);
            }
            futures_lite::future::or(listen, glommio::timer::sleep(deadline - now)).await;
        }
    }

    /// Applies what is committed, from where it stopped; whether anything changed.
    async fn apply_committed(&self) -> Result<bool, String> {
        let log = self.group.log().clone();
        let mut changed = false;
        loop {
            let hw = Offset(self.group.high_watermark());
            let at = self.applied.get();
            if at >= hw {
                return Ok(changed);
            }
            let r = log
                .read_upto(at, APPLY_READ_BYTES, hw)
                .await
                .map_err(|e| format!("reading the metadata log at {at}: {e}"))?;
            if r.batches.is_empty() {
                return Err(format!("no batch at offset {at} below {hw}"));
            }
            for b in &r.batches {
                let h = BatchHeader::parse(b).map_err(|e| format!("batch at {at}: {e}"))?;
                let next = Offset(h.last_offset() as u64 + 1);
                match command::decode(b) {
                    Ok(cmds) if cmds.is_empty() => {}
                    Ok(cmds) => {
                        let mut state = self.state.borrow_mut();
                        let outs: Vec<Outcome> = cmds.iter().map(|c| state.apply(c)).collect();
                        for (c, o) in cmds.iter().zip(&outs) {
                            tracing::debug!(command = ?c, outcome = ?o, "metadata applied");
                        }
                        let mut kept = self.outcomes.borrow_mut();
                        kept.insert(h.base_offset as u64, outs);
                        while kept.len() > OUTCOMES_MAX {
                            kept.pop_first();
                        }
                        changed = true;
                    }
                    // Every node skips the same batch: the state stays the same everywhere.
                    Err(e) => tracing::error!(offset = h.base_offset, error = %e,
                        "metadata batch is not commands; skipped"),
                }
                self.applied.set(next);
            }
            self.applied_event.notify();
        }
    }

    pub(crate) async fn close(&self) {
        self.closed.set(true);
        self.applied_event.notify();
        self.group.close();
    }
}

impl Shard {
    /// Shard 0 of a cluster node: opens the metadata group and runs its apply loop, the
    /// registration of this node and the forwarding of other nodes' proposals.
    pub(crate) async fn start_metadata(self: &Rc<Self>) -> Result<(), String> {
        let Some(cs) = &self.cluster else {
            return Ok(());
        };
        let mg = MetadataGroup::open(self, cs).await?;
        cs.repl.add(mg.group.clone());
        let m = mg.clone();
        cs.repl
            .set_forward_handler(Rc::new(move |from, batch| m.take_forwarded(from, batch)));
        *cs.metadata.borrow_mut() = Some(mg.clone());
        glommio::spawn_local(self.clone().apply_loop(mg.clone())).detach();
        glommio::spawn_local(self.clone().register_loop(mg)).detach();
        Ok(())
    }

    /// Applies committed metadata and sends every change (and every change of metadata leader)
    /// to all shards of this node.
    async fn apply_loop(self: Rc<Self>, mg: Rc<MetadataGroup>) {
        let mut seq = 0u64;
        let mut sent_leader = None;
        let mut sent_caught_up = false;
        let mut first = true;
        while !mg.closed.get() {
            let listen = mg.group.changed.listen();
            let changed = match mg.apply_committed().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot apply the metadata log; retrying");
                    glommio::timer::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let leader = mg.group.leader().leader;
            // Caught up: a leader is known and this node applied all it knows is committed
            // (a follower learns the commit from the leader's messages).
            let caught_up = leader.is_some() && mg.applied.get().0 >= mg.group.high_watermark();
            if changed || leader != sent_leader || first || caught_up != sent_caught_up {
                first = false;
                sent_leader = leader;
                sent_caught_up = caught_up;
                seq += 1;
                let update = ClusterUpdate {
                    seq,
                    meta: mg.state.borrow().clone(),
                    metadata_leader: leader,
                    caught_up,
                };
                self.broadcast_cluster(update).await;
            }
            futures_lite::future::or(listen, glommio::timer::sleep(Duration::from_millis(200)))
                .await;
        }
    }

    async fn broadcast_cluster(self: &Rc<Self>, update: ClusterUpdate) {
        let mesh = self.mesh();
        let mut calls = Vec::new();
        for s in 1..self.shard_count {
            let mesh = mesh.clone();
            let u = update.clone();
            calls.push(glommio::spawn_local(async move {
                mesh.call(ShardId(s as u16), Call::Cluster(Box::new(u)))
                    .await
            }));
        }
        self.apply_cluster(update).await;
        for c in calls {
            let _ = c.await;
        }
    }

    /// Registers this node (its client and replication addresses) whenever the applied
    /// metadata does not hold it as it is.
    async fn register_loop(self: Rc<Self>, mg: Rc<MetadataGroup>) {
        let me = self.me();
        let replication_addr = self
            .config
            .peers
            .iter()
            .find(|p| p.node == me.0)
            .map(|p| p.addr.to_string())
            .unwrap_or_default();
        let info = NodeInfo {
            node: me.0,
            host: self.ports.host.clone(),
            port: self.ports.common_port,
            shard_ports: self.ports.shard_ports.clone(),
            replication_addr,
        };
        while !mg.closed.get() && !self.shutting_down.get() {
            let current = mg.state.borrow().nodes.get(&me.0) == Some(&info);
            if !current && mg.group.leader().leader.is_some() {
                let batch =
                    command::encode(&[Command::RegisterNode(info.clone())], now_ms()).freeze();
                mg.forward(batch);
            }
            glommio::timer::sleep(REGISTER_PERIOD).await;
        }
    }

    fn metadata_group(&self) -> Result<Rc<MetadataGroup>, TopicError> {
        self.cluster
            .as_ref()
            .and_then(|cs| cs.metadata.borrow().clone())
            .ok_or(TopicError::ShuttingDown(self.id))
    }

    /// The nodes that can take new replicas: registered and reachable from here.
    fn placeable(&self, meta: &ClusterMeta) -> ClusterMeta {
        let net = self.cluster.as_ref().map(|cs| cs.repl.net.clone());
        let mut m = meta.clone();
        m.nodes
            .retain(|&n, _| net.as_ref().is_none_or(|net| net.is_up(NodeId(n))));
        m
    }

    /// Shard 0 of the metadata leader: places and proposes a topic, answers once applied, and
    /// waits (bounded) for its partitions to report leaders.
    pub(super) async fn cluster_create(&self, req: TopicRequest) -> Result<(), TopicError> {
        let mg = self.metadata_group()?;
        super::catalog::validate_topic_name(&req.name)?;
        let factor = match req.replication_factor {
            0 => self.config.replication.default_replication_factor,
            f => f,
        };
        // Nodes register within moments of a cluster's start: a create that comes first waits
        // for them (bounded) rather than refusing a factor the peers can hold.
        let wait_until = Instant::now() + REGISTRATION_WAIT;
        let mut live = self.placeable(&mg.state.borrow());
        while usize::from(factor) > live.nodes.len()
            && usize::from(factor) <= self.config.peers.len()
            && Instant::now() < wait_until
        {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            live = self.placeable(&mg.state.borrow());
        }
        if usize::from(factor) > live.nodes.len() || factor == 0 {
            return Err(TopicError::InvalidReplicationFactor {
                asked: factor,
                live: live.nodes.len(),
            });
        }
        if mg.state.borrow().catalog.topics.contains_key(&req.name) {
            return Err(super::catalog::CatalogError::TopicExists(req.name.clone()).into());
        }
        let placement = assign::place(&live, &req.name, req.partitions, usize::from(factor))
            .map_err(|e| TopicError::Metadata(e.to_string()))?;
        let cmd = Command::CreateTopic {
            name: req.name.clone(),
            partitions: req.partitions,
            config: req.config,
            placement,
        };
        let timeout = ADMIN_TIMEOUT;
        let outcome = mg.propose(&[cmd], timeout).await?;
        let meta = match outcome.into_iter().next() {
            Some(Outcome::Created(meta)) => meta,
            Some(Outcome::Catalog(e)) => return Err(e.into()),
            other => return Err(TopicError::Metadata(format!("{other:?}"))),
        };
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "topic created");
        // Clients can produce at once if the first leaders are known; they retry otherwise.
        let deadline = Instant::now() + CREATE_LEADERS_WAIT;
        while Instant::now() < deadline {
            let listen = mg.applied_event.listen();
            let all = {
                let s = mg.state.borrow();
                (0..meta.partitions).all(|p| s.leader(meta.id, p).is_some())
            };
            if all {
                break;
            }
            futures_lite::future::or(listen, glommio::timer::sleep(Duration::from_millis(100)))
                .await;
        }
        Ok(())
    }

    /// Shard 0 of the metadata leader: proposes a topic's deletion; every node removes its
    /// replicas as it applies it.
    pub(super) async fn cluster_delete(&self, name: String) -> Result<(), TopicError> {
        let mg = self.metadata_group()?;
        let timeout = ADMIN_TIMEOUT;
        let outcome = mg
            .propose(&[Command::DeleteTopic { name: name.clone() }], timeout)
            .await?;
        match outcome.into_iter().next() {
            Some(Outcome::Deleted(_)) => {
                tracing::info!(topic = %name, "topic deleted");
                Ok(())
            }
            Some(Outcome::Catalog(e)) => Err(e.into()),
            other => Err(TopicError::Metadata(format!("{other:?}"))),
        }
    }

    /// Mesh handler of `Call::ForwardMeta` (shard 0).
    pub(crate) fn handle_forward(&self, batch: Bytes) -> Reply {
        self.forward_metadata_batch(batch);
        Reply::Admin(Ok(()))
    }
}
