//! The local half of each partition operation, on the shard that owns the partition's log:
//! produce (split into batches, one `append_many`), fetch with long poll
//! (`PartitionLog::changed`), offset lookups, and the state of the partitions it serves or could
//! not open.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::super::core::Shard;
use super::super::error::{LogFailure, PartitionError};
use super::super::replicas::epoch_of;
use super::types::{
    FetchSpec, Fetched, LogOffsets, OffsetQuery, PartitionInfo, PartitionState, ProduceAcks,
    ReplicaState,
};
use crate::disk::{LogError, PartitionLog};
use crate::record;
use crate::replication::driver::Group;
use crate::replication::raft::{Acks, ProposeError};
use crate::types::{Epoch, NodeId, Offset, TopicPartition};

/// The leader epoch a single-node broker stamps into batches. Replication will own this.
const SINGLE_NODE_EPOCH: Epoch = Epoch(0);

/// The local half of each operation: the partition's log is on this shard.
impl Shard {
    pub(in crate::shard) fn local_log(
        &self,
        tp: &TopicPartition,
    ) -> Result<Rc<PartitionLog>, PartitionError> {
        if self.closed.get() {
            return Err(PartitionError::ShuttingDown(self.id));
        }
        if let Some(e) = self.unopened.borrow().get(tp) {
            return Err(e.clone());
        }
        if self.pending.borrow().contains(&tp.topic) {
            // Still being created: as unknown as it will stay if the create is rolled back.
            return Err(PartitionError::UnknownPartition(tp.clone()));
        }
        self.logs
            .borrow()
            .get(tp)
            .cloned()
            .ok_or_else(|| PartitionError::UnknownPartition(tp.clone()))
    }

    pub(in crate::shard) async fn produce_local(
        &self,
        tp: &TopicPartition,
        mut records: BytesMut,
        deadline: Instant,
        acks: ProduceAcks,
    ) -> Result<Vec<Offset>, PartitionError> {
        let leader = self.replica_leader(tp)?;
        let log = self.local_log(tp)?;
        // Split into batches (zero-copy); each is fully validated by the log before any is
        // appended. A control batch is refused before anything is appended: control batches
        // are the broker's own (replication writes them), as in Kafka.
        let mut lens = Vec::new();
        for (index, item) in record::batches(&records).enumerate() {
            match item {
                Ok((header, range)) if header.is_control() => {
                    return Err(PartitionError::ControlBatch {
                        index,
                        at: range.start,
                    })
                }
                Ok((_, range)) => lens.push(range.len()),
                Err(e) => return Err(PartitionError::log(&LogError::InvalidBatch(e))),
            }
        }
        if lens.is_empty() {
            return Err(PartitionError::NoRecordBatch);
        }
        let mut batches = Vec::with_capacity(lens.len());
        for len in lens {
            batches.push(records.split_to(len));
        }
        if let Some(group) = leader {
            return self
                .produce_replicated(tp, &group, batches, deadline, acks)
                .await;
        }
        let durability = log.config().durability;
        let infos = log
            .append_many_by(batches, SINGLE_NODE_EPOCH, durability, Some(deadline))
            .await
            .map_err(|e| PartitionError::log(&e))?;
        // Single node: the leader's durability is the majority's (one replica).
        let _ = acks;
        Ok(infos.iter().map(|i| i.base_offset).collect())
    }

    /// A cluster node's produce: each batch is proposed to the partition's Raft group in order
    /// (the leader stamps its offsets and epoch), then the answer waits for each outcome per
    /// `acks` (`All`: committed, so durable on a majority; `Leader`: durable here), bounded by
    /// `deadline`.
    async fn produce_replicated(
        &self,
        tp: &TopicPartition,
        group: &Rc<Group>,
        batches: Vec<BytesMut>,
        deadline: Instant,
        acks: ProduceAcks,
    ) -> Result<Vec<Offset>, PartitionError> {
        let acks = match acks {
            ProduceAcks::All => Acks::All,
            ProduceAcks::Leader => Acks::Leader,
        };
        let mut offsets = Vec::with_capacity(batches.len());
        let mut waits = Vec::with_capacity(batches.len());
        for b in batches {
            let (p, wait) = group
                .submit(b, acks)
                .map_err(|e| self.propose_error(tp, group, e))?;
            offsets.push(Offset(p.base_offset));
            waits.push(wait);
        }
        for wait in waits {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = futures_lite::future::or(async { Some(wait.await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await;
            match outcome {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(self.propose_error(tp, group, e)),
                Some(Err(_)) => return Err(PartitionError::LeaderNotAvailable(tp.clone())),
                None => {
                    return Err(PartitionError::Log {
                        failure: LogFailure::TimedOut,
                        message: format!(
                            "partition {tp}: the batch was not replicated to a majority \
                             before the request's deadline; it may still be committed"
                        ),
                    })
                }
            }
        }
        Ok(offsets)
    }

    fn propose_error(&self, tp: &TopicPartition, group: &Group, e: ProposeError) -> PartitionError {
        match e {
            ProposeError::NotLeader { leader: Some(l) } => {
                let node = NodeId(l as u32);
                PartitionError::NotLeader {
                    tp: tp.clone(),
                    leader: group.placement().shard_on(node).map(|s| (node, s)),
                    epoch: Some(epoch_of(group.leader().term)),
                }
            }
            ProposeError::NotLeader { leader: None }
            | ProposeError::Dropped
            | ProposeError::Failed(_) => PartitionError::LeaderNotAvailable(tp.clone()),
            ProposeError::BadBatch(b) => PartitionError::log(&LogError::InvalidBatch(b)),
            ProposeError::Backpressure { entries, bytes } => PartitionError::Log {
                failure: LogFailure::TimedOut,
                message: format!(
                    "partition {tp}: {entries} batches ({bytes} bytes) wait for replication; \
                     retry later"
                ),
            },
            ProposeError::Inconsistent(m) => PartitionError::Log {
                failure: LogFailure::Other,
                message: m,
            },
        }
    }

    /// Every replica of `tp` in placement order as this shard (the leader) sees it: the seam
    /// the replication wiring fills with its followers' acknowledged offsets and in-sync set.
    /// Single node: this node alone, holding the whole log, in sync.
    pub(in crate::shard) fn replica_states(
        &self,
        tp: &TopicPartition,
        log: &PartitionLog,
    ) -> Vec<ReplicaState> {
        if let Some(g) = self
            .cluster
            .as_ref()
            .and_then(|c| c.groups.borrow().get(tp).cloned())
        {
            let lag = Duration::from_millis(self.config.replication.replica_lag_ms_max);
            return g
                .replicas(lag)
                .into_iter()
                .map(|r| ReplicaState {
                    node: r.node,
                    log_end: r.log_end,
                    in_sync: r.in_sync,
                })
                .collect();
        }
        let me = NodeId(self.config.node_id);
        let nodes = self.placement(tp).map_or_else(|| vec![me], |p| p.replicas);
        nodes
            .into_iter()
            .map(|node| ReplicaState {
                node,
                log_end: (node == me).then(|| log.log_end_offset()),
                in_sync: node == me,
            })
            .collect()
    }

    pub(in crate::shard) async fn fetch_local(
        &self,
        tp: &TopicPartition,
        spec: FetchSpec,
    ) -> Result<Fetched, PartitionError> {
        self.replica_leader(tp)?;
        let log = self.local_log(tp)?;
        let out_of_range = |e: &LogError| PartitionError::OffsetOutOfRange {
            message: e.to_string(),
            offsets: offsets_of(&log),
        };
        let Some(offset) = spec.offset else {
            return Err(out_of_range(&LogError::OffsetOutOfRange {
                requested: Offset(0),
                earliest: log.log_start_offset(),
                latest: log.high_watermark(),
            }));
        };
        let limits = &self.config.limits;
        let wait = spec
            .max_wait
            .min(Duration::from_millis(u64::from(limits.fetch_wait_ms_max)));
        let deadline = Instant::now() + wait;
        let max_bytes = spec.max_bytes.min(limits.fetch_bytes_max as usize);
        // 0 answers at once, even with nothing to return (`docs/PROTOCOL.md`, "6 Fetch").
        let min_bytes = spec.min_bytes.min(max_bytes.max(1));
        loop {
            // Register before reading, so an append between the read and the wait is not missed.
            let changed = log.changed();
            let stopping = self.stopping.listen();
            let r = log.read(offset, max_bytes).await.map_err(|e| match e {
                LogError::OffsetOutOfRange { .. } => out_of_range(&e),
                other => PartitionError::log(&other),
            })?;
            let now = Instant::now();
            if r.bytes() >= min_bytes || now >= deadline || self.shutting_down.get() {
                return Ok(Fetched {
                    batches: r.batches,
                    offsets: LogOffsets {
                        log_start: r.log_start_offset,
                        high_watermark: r.high_watermark,
                        log_end: r.log_end_offset,
                    },
                });
            }
            let timer = glommio::timer::sleep(deadline - now);
            futures_lite::future::or(futures_lite::future::or(changed, stopping), timer).await;
        }
    }

    pub(in crate::shard) async fn list_offset_local(
        &self,
        tp: &TopicPartition,
        query: OffsetQuery,
    ) -> Result<Option<Offset>, PartitionError> {
        self.replica_leader(tp)?;
        let log = self.local_log(tp)?;
        match query {
            OffsetQuery::Latest => Ok(Some(log.high_watermark())),
            OffsetQuery::Earliest => Ok(Some(log.log_start_offset())),
            OffsetQuery::AtTime(t) if t < 0 => Err(PartitionError::InvalidTimestamp(t)),
            OffsetQuery::AtTime(t) => log
                .offset_for_timestamp(t)
                .await
                .map_err(|e| PartitionError::log(&e)),
        }
    }

    /// The partitions of `topics` (`None`: all) this shard serves or failed to open.
    pub(in crate::shard) fn local_partition_info(
        &self,
        topics: Option<&[String]>,
    ) -> Vec<PartitionInfo> {
        let wanted = |topic: &str| topics.is_none_or(|t| t.iter().any(|x| x == topic));
        let logs = self.logs.borrow();
        let pending = self.pending.borrow();
        let mut out = Vec::new();
        for (tp, log) in logs.iter() {
            if !wanted(&tp.topic) || pending.contains(&tp.topic) {
                continue;
            }
            // A cluster node describes the partitions it leads; their followers do not know
            // the committed state.
            let epoch = match self.replica_leader(tp) {
                Ok(Some(g)) => epoch_of(g.leader().term),
                Ok(None) => log.last_epoch().max(SINGLE_NODE_EPOCH),
                Err(_) => continue,
            };
            out.push(PartitionInfo {
                tp: tp.clone(),
                state: Ok(PartitionState {
                    leader_epoch: epoch,
                    offsets: offsets_of(log),
                    damaged: log
                        .damaged_ranges()
                        .iter()
                        .map(|r| (r.first, r.last))
                        .collect(),
                    replicas: self.replica_states(tp, log),
                }),
            });
        }
        for (tp, e) in self.unopened.borrow().iter() {
            if wanted(&tp.topic) {
                out.push(PartitionInfo {
                    tp: tp.clone(),
                    state: Err(e.clone()),
                });
            }
        }
        out
    }
}

fn offsets_of(log: &PartitionLog) -> LogOffsets {
    LogOffsets {
        log_start: log.log_start_offset(),
        high_watermark: log.high_watermark(),
        log_end: log.log_end_offset(),
    }
}
