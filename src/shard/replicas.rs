//! A cluster node's shards and their replicas (`quill serve --peers`): each shard drives the
//! Raft groups of the partition replicas placed on it, and shard 0 also the cluster metadata
//! group (`metadata.rs` in this module's sibling).
//!
//! - The applied cluster metadata reaches every shard as a [`ClusterUpdate`] from shard 0
//!   (`Call::Cluster`); [`Shard::apply_cluster`] makes the shard's replicas match it: it opens a
//!   log and starts a group for each replica placed on this node and shard, and closes (and for
//!   a deleted topic removes) the others.
//! - A partition is served only by its Raft leader: [`Shard::replica_leader`] is the check every
//!   local operation makes first (`NotLeader` with the leader's node and shard, or
//!   `LeaderNotAvailable`).
//! - Each shard reports the partitions it leads to the metadata log (`partition_leader`, with
//!   the in-sync replicas) whenever the applied metadata says otherwise ([`report_loop`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashMap;
use bytes::Bytes;
use glommio::sync::Semaphore;

use super::call::{Call, Reply};
use super::core::Shard;
use super::error::PartitionError;
use super::metadata::MetadataGroup;
use crate::disk::{system_clock, LogOptions, PartitionLog};
use crate::local::Event;
use crate::replication::driver::{Group, LeaderHook, Replication, ShardLink};
use crate::replication::message::GroupId;
use crate::replication::metadata::{ClusterMeta, Command};
use crate::replication::raft::ReplicaConfig;
use crate::types::{Epoch, NodeId, ShardId, TopicPartition};

/// How often a shard compares what it leads with what the metadata says.
const REPORT_PERIOD: Duration = Duration::from_millis(500);
/// Most leader reports in one metadata batch.
const REPORTS_PER_BATCH_MAX: usize = 1000;
/// Messages queued in a shard's outbox to the replication thread before sends wait.
const OUTBOX_MESSAGES_MAX: usize = 65_536;

/// The applied cluster metadata, as shard 0 sends it to every shard.
#[derive(Clone, Debug)]
pub struct ClusterUpdate {
    /// Increases with every update shard 0 sends: an older one arriving late is ignored.
    pub seq: u64,
    pub meta: ClusterMeta,
    pub metadata_leader: Option<NodeId>,
    /// A leader is known and everything it had committed when this update was made is
    /// applied: a topic missing from `meta` does not exist. Before that (a node starting or
    /// cut off), a missing topic may just not be known here yet.
    pub caught_up: bool,
}

/// One shard's share of the cluster.
pub(crate) struct ClusterState {
    pub(crate) repl: Rc<Replication>,
    pub(crate) cfg: ReplicaConfig,
    /// The applied metadata as last received from shard 0.
    pub(crate) meta: RefCell<Rc<ClusterMeta>>,
    pub(crate) metadata_leader: Cell<Option<NodeId>>,
    /// As the last update said ([`ClusterUpdate::caught_up`]).
    pub(crate) caught_up: Cell<bool>,
    seq: Cell<u64>,
    /// Shard 0 only: the metadata group.
    pub(crate) metadata: RefCell<Option<Rc<MetadataGroup>>>,
    /// The replicas on this shard, by partition.
    pub(crate) groups: RefCell<AHashMap<TopicPartition, Rc<Group>>>,
    /// One reconciliation at a time.
    reconcile: Semaphore,
    /// Wakes the leader report loop (a group changed leader).
    pub(crate) report: Rc<Event>,
}

/// The replica settings of this broker's groups.
pub(crate) fn replica_config(config: &crate::config::BrokerConfig) -> ReplicaConfig {
    let r = &config.replication;
    let d = ReplicaConfig::default();
    ReplicaConfig {
        tick_ms: r.tick_ms,
        election_ticks: r.election_ticks as usize,
        election_ticks_max: 2 * r.election_ticks as usize,
        heartbeat_ticks: r.heartbeat_ticks as usize,
        msg_bytes_max: r.append_bytes_max,
        inflight_msgs_max: r.inflight_appends_max,
        batch_bytes_max: d
            .batch_bytes_max
            .max(config.topic_defaults.batch_bytes_max as usize),
        ..d
    }
}

impl ClusterState {
    pub(crate) fn start(node: NodeId, cfg: ReplicaConfig, link: ShardLink) -> ClusterState {
        ClusterState {
            repl: Replication::start(node, cfg.clone(), link, OUTBOX_MESSAGES_MAX),
            cfg,
            meta: RefCell::new(Rc::new(ClusterMeta::default())),
            metadata_leader: Cell::new(None),
            caught_up: Cell::new(false),
            seq: Cell::new(0),
            metadata: RefCell::new(None),
            groups: RefCell::new(AHashMap::new()),
            reconcile: Semaphore::new(1),
            report: Rc::new(Event::new()),
        }
    }
}

/// The group of partition `p` of topic `topic_id`; `None` for an id beyond group ids.
pub(crate) fn group_id(topic_id: u64, p: u32) -> Option<GroupId> {
    u32::try_from(topic_id)
        .ok()
        .filter(|&t| t != super::metadata::METADATA_TOPIC_ID)
        .map(|t| GroupId::new(t, p))
}

/// A Raft term as a leader epoch.
pub(crate) fn epoch_of(term: u64) -> Epoch {
    Epoch(i32::try_from(term).unwrap_or(i32::MAX))
}

impl Shard {
    pub(crate) fn me(&self) -> NodeId {
        NodeId(self.config.node_id)
    }

    /// Cluster mode: the leader check of a local operation on `tp`. `Ok(Some(group))` when this
    /// replica leads; `Ok(None)` on a single-node broker.
    pub(crate) fn replica_leader(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<Rc<Group>>, PartitionError> {
        let Some(cs) = &self.cluster else {
            return Ok(None);
        };
        let Some(g) = cs.groups.borrow().get(tp).cloned() else {
            return Err(PartitionError::LeaderNotAvailable(tp.clone()));
        };
        if g.is_leader() {
            return Ok(Some(g));
        }
        let view = g.leader();
        match view.leader {
            Some(node) if node != self.me() => Err(PartitionError::NotLeader {
                tp: tp.clone(),
                leader: g.placement().shard_on(node).map(|s| (node, s)),
                epoch: Some(epoch_of(view.term)),
            }),
            _ => Err(PartitionError::LeaderNotAvailable(tp.clone())),
        }
    }

    /// Whether a topic this node does not know may exist all the same: a cluster node whose
    /// metadata has not caught up with the leader's. Such a topic is `LeaderNotAvailable`
    /// (retried by clients), not unknown.
    pub fn metadata_behind(&self) -> bool {
        self.cluster.as_ref().is_some_and(|cs| !cs.caught_up.get())
    }

    /// Cluster mode: where a partition this node holds no replica of is led, as the metadata
    /// says (`NotLeader` naming it, or `LeaderNotAvailable`).
    pub(crate) fn remote_leader(&self, tp: &TopicPartition) -> PartitionError {
        let leader = self.cluster.as_ref().and_then(|cs| {
            let meta = cs.meta.borrow();
            let t = meta.catalog.topics.get(&tp.topic)?;
            meta.leader(t.id, tp.partition.0).cloned()
        });
        match leader {
            Some(l) => PartitionError::NotLeader {
                tp: tp.clone(),
                leader: Some((l.node, l.shard)),
                epoch: Some(epoch_of(l.term)),
            },
            None => PartitionError::LeaderNotAvailable(tp.clone()),
        }
    }

    /// Makes this shard's replicas match the applied metadata of `update`.
    pub(crate) async fn apply_cluster(self: &Rc<Self>, update: ClusterUpdate) {
        let Some(cs) = &self.cluster else {
            return;
        };
        let Ok(_permit) = cs.reconcile.acquire_permit(1).await else {
            return;
        };
        if update.seq <= cs.seq.get() || self.closed.get() {
            return;
        }
        cs.seq.set(update.seq);
        cs.metadata_leader.set(update.metadata_leader);
        cs.caught_up.set(update.caught_up);
        let meta = Rc::new(update.meta);
        *cs.meta.borrow_mut() = meta.clone();
        {
            let mut c = self.catalog.borrow_mut();
            c.topics = meta.catalog.topics.clone();
            c.deleted = meta.catalog.deleted.clone();
            c.next_topic_id = meta.catalog.next_topic_id;
        }
        // Replicas whose topic is gone (or was recreated under a new id).
        let gone: Vec<(TopicPartition, Rc<Group>)> = cs
            .groups
            .borrow()
            .iter()
            .filter(|(tp, g)| {
                meta.catalog
                    .topics
                    .get(&tp.topic)
                    .is_none_or(|t| group_id(t.id, tp.partition.0) != Some(g.id))
            })
            .map(|(tp, g)| (tp.clone(), g.clone()))
            .collect();
        for (tp, g) in gone {
            cs.groups.borrow_mut().remove(&tp);
            cs.repl.remove(g.id);
            let dir = g.log().dir().to_path_buf();
            drop(g);
            self.close_log(&tp).await;
            let deleted = meta
                .catalog
                .deleted
                .iter()
                .any(|d| d.partition_dirs(&self.data_dir).contains(&dir));
            if deleted {
                if let Err(e) = super::topics::remove_dir_all(&dir).await {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove a deleted replica");
                }
            }
            tracing::info!(%tp, "replica closed");
        }
        self.unopened
            .borrow_mut()
            .retain(|tp, _| meta.catalog.topics.contains_key(&tp.topic));
        // Replicas placed here that are not running yet.
        let me = self.me();
        for t in meta.catalog.topics.values() {
            for p in 0..t.partitions {
                let Some(place) = t.placement(p) else {
                    continue;
                };
                if place.shard_on(me) != Some(self.id) {
                    continue;
                }
                let tp = TopicPartition::new(t.name.as_str(), p);
                if cs.groups.borrow().contains_key(&tp) || self.closed.get() {
                    continue;
                }
                let Some(id) = group_id(t.id, p) else {
                    continue;
                };
                match self.start_replica(cs, t, p, id, place.clone()).await {
                    Ok(g) => {
                        cs.groups.borrow_mut().insert(tp, g.clone());
                        cs.repl.add(g);
                    }
                    Err(e) => {
                        tracing::error!(%tp, error = %e, "cannot start the replica");
                        self.unopened.borrow_mut().insert(tp, e);
                    }
                }
            }
        }
        cs.report.notify();
    }

    async fn start_replica(
        self: &Rc<Self>,
        cs: &ClusterState,
        t: &super::catalog::TopicMeta,
        p: u32,
        id: GroupId,
        place: super::placement::Placement,
    ) -> Result<Rc<Group>, PartitionError> {
        let tp = TopicPartition::new(t.name.as_str(), p);
        let log_config = t
            .config
            .log_config()
            .and_then(|c| self.config.log_config_for(c))
            .map_err(|e| PartitionError::NotOpen {
                tp: tp.clone(),
                reason: super::error::NotOpen::Log {
                    failure: super::error::LogFailure::Io,
                    message: e,
                },
            })?;
        if self.logs.borrow().len() >= self.fds.partitions_max {
            return Err(self.no_room(&tp));
        }
        let options = LogOptions {
            config: log_config,
            cache: self.cache.clone(),
            files: self.files.clone(),
            clock: system_clock(),
        };
        let dir = t.partition_dir(&self.data_dir, p);
        let (log, report) = PartitionLog::open(&dir, options)
            .await
            .map_err(|e| self.open_error(&tp, &e))?;
        for (path, first, last) in &report.corrupt {
            tracing::error!(path = %path.display(), %first, %last, "damaged range: not served");
        }
        let log = Rc::new(log);
        let report = cs.report.clone();
        let hook: LeaderHook = Rc::new(move |_g, _view| report.notify());
        let g = Group::start(
            tp.clone(),
            id,
            self.me(),
            place,
            cs.cfg.clone(),
            log.clone(),
            cs.repl.net.clone(),
            Some(hook),
        )
        .await
        .map_err(|e| PartitionError::NotOpen {
            tp: tp.clone(),
            reason: super::error::NotOpen::Log {
                failure: super::error::LogFailure::Damaged,
                message: e,
            },
        })?;
        self.unopened.borrow_mut().remove(&tp);
        self.logs.borrow_mut().insert(tp.clone(), log);
        tracing::info!(%tp, group = %id, "replica started");
        Ok(g)
    }

    /// Removes `tp`'s log from this shard and closes it once nothing else holds it.
    async fn close_log(&self, tp: &TopicPartition) {
        let Some(mut log) = self.logs.borrow_mut().remove(tp) else {
            return;
        };
        // The group's tasks drop their handles as they notice the close.
        for _ in 0..100 {
            match Rc::try_unwrap(log) {
                Ok(l) => {
                    if let Err(e) = l.close().await {
                        tracing::warn!(%tp, error = %e, "closing a replica's log");
                    }
                    return;
                }
                Err(rc) => log = rc,
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(%tp, "a replica's log is still in use; dropped without a final sync");
    }

    /// Sends `commands` to the metadata leader through shard 0.
    pub(crate) async fn forward_to_metadata(&self, commands: Vec<Command>) {
        let batch = crate::replication::metadata::command::encode(&commands, now_ms()).freeze();
        if self.id.0 == 0 {
            self.forward_metadata_batch(batch);
            return;
        }
        let _ = self.mesh().call(ShardId(0), Call::ForwardMeta(batch)).await;
    }

    /// Shard 0: proposes `batch` if this node leads the metadata, or sends it to the leader.
    pub(crate) fn forward_metadata_batch(&self, batch: Bytes) {
        let Some(cs) = &self.cluster else {
            return;
        };
        let Some(mg) = cs.metadata.borrow().clone() else {
            return;
        };
        mg.forward(batch);
    }

    /// Every `REPORT_PERIOD` (or when a group's leader changes): the partitions this shard
    /// leads whose recorded leader or in-sync set differs from what the applied metadata says
    /// are reported to the metadata leader (Kafka's AlterPartition).
    pub(crate) async fn report_loop(self: Rc<Self>) {
        let Some(cs) = &self.cluster else {
            return;
        };
        let lag_max = Duration::from_millis(self.config.replication.replica_lag_ms_max);
        while !self.shutting_down.get() {
            let wake = cs.report.listen();
            let meta = cs.meta.borrow().clone();
            let me = self.me();
            let mut commands = Vec::new();
            for (tp, g) in cs.groups.borrow().iter() {
                if !g.is_leader() || commands.len() >= REPORTS_PER_BATCH_MAX {
                    continue;
                }
                let Some(t) = meta.catalog.topics.get(&tp.topic) else {
                    continue;
                };
                let term = g.leader().term;
                let in_sync: Vec<NodeId> = g
                    .replicas(lag_max)
                    .into_iter()
                    .filter(|r| r.in_sync)
                    .map(|r| r.node)
                    .collect();
                let recorded = meta.leader(t.id, tp.partition.0);
                let same = recorded.is_some_and(|l| {
                    l.node == me && l.shard == self.id && l.term == term && l.in_sync == in_sync
                });
                if !same {
                    commands.push(Command::PartitionLeader {
                        topic_id: t.id,
                        partition: tp.partition.0,
                        node: me.0,
                        shard: self.id.0,
                        term,
                        in_sync: in_sync.iter().map(|n| n.0).collect(),
                    });
                }
            }
            if !commands.is_empty() && cs.metadata_leader.get().is_some() {
                self.forward_to_metadata(commands).await;
            }
            futures_lite::future::or(wake, glommio::timer::sleep(REPORT_PERIOD)).await;
        }
    }

    /// Stops every group of this shard (shutdown): their logs are closed with the others.
    pub(crate) async fn close_replicas(&self) {
        let Some(cs) = &self.cluster else {
            return;
        };
        cs.repl.close();
        cs.groups.borrow_mut().clear();
        let mg = cs.metadata.borrow_mut().take();
        if let Some(mg) = mg {
            mg.close().await;
        }
        // Let the groups' tasks see the close and drop their handles on the logs.
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }

    /// Mesh handler of `Call::Cluster`.
    pub(crate) async fn handle_cluster_update(self: Rc<Self>, update: ClusterUpdate) -> Reply {
        self.apply_cluster(update).await;
        Reply::Admin(Ok(()))
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
