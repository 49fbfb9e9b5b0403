//! The partition service: routes each operation to the shard its partition's recorded placement
//! names, running it here or on the owner through the mesh.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::super::call::{Call, Reply};
use super::super::catalog::{validate_topic_name, CatalogError};
use super::super::core::Shard;
use super::super::error::PartitionError;
use super::types::{FetchSpec, Fetched, OffsetQuery, PartitionInfo, ProduceAcks};
use crate::types::{NodeId, Offset, ShardId, TopicPartition};

/// The partition operations of one shard's broker. Cheap to clone; lives on the shard.
#[derive(Clone)]
pub struct PartitionService {
    shard: Rc<Shard>,
}

/// Refuses a topic name that breaks the naming rules before it is looked up, so a client is
/// told the name is invalid rather than unknown (`docs/PROTOCOL.md`, "APIs").
fn check_topic_name(name: &str) -> Result<(), PartitionError> {
    match validate_topic_name(name) {
        Ok(()) => Ok(()),
        Err(CatalogError::InvalidName { name, reason }) => {
            Err(PartitionError::InvalidTopicName { name, reason })
        }
        Err(other) => unreachable!("a name check fails only on the name: {other}"),
    }
}

impl PartitionService {
    /// The service of `shard`.
    pub fn new(shard: Rc<Shard>) -> PartitionService {
        PartitionService { shard }
    }

    /// The shard whose service this is.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    /// The shard of this broker that serves `tp`: the one its recorded placement names. A
    /// partition led by another node is `NotLeader` with that node as the hint: requests are
    /// forwarded between shards, never between brokers. (A single-node broker leads every
    /// partition: `placement::settle` rehomes them at start.) The cluster wiring puts its
    /// leadership view here: `LeaderNotAvailable` while the partition's group has no leader,
    /// `NotLeader` with the leader's epoch when this node follows.
    fn owner(&self, tp: &TopicPartition) -> Result<ShardId, PartitionError> {
        check_topic_name(&tp.topic)?;
        let place = self.shard.placement(tp).ok_or_else(|| {
            if self.shard.metadata_behind() {
                PartitionError::LeaderNotAvailable(tp.clone())
            } else {
                PartitionError::UnknownPartition(tp.clone())
            }
        })?;
        let me = NodeId(self.shard.config.node_id);
        if self.shard.is_cluster() {
            // The shard holding this node's replica decides (its group knows the leader).
            return place
                .shard_on(me)
                .ok_or_else(|| self.shard.remote_leader(tp));
        }
        if place.node != me {
            return Err(PartitionError::NotLeader {
                tp: tp.clone(),
                leader: Some((place.node, place.shard)),
                epoch: None,
            });
        }
        Ok(place.shard)
    }

    async fn call(&self, owner: ShardId, call: Call) -> Result<Reply, PartitionError> {
        self.shard
            .mesh()
            .call(owner, call)
            .await
            .map_err(|g| PartitionError::ShuttingDown(g.0))
    }

    /// Appends `records` (one or more batches) to a partition and returns each batch's base
    /// offset. If they cannot be appended by `deadline` they are not appended at all; once
    /// appended, the answer waits for their durability: on the leader with
    /// [`ProduceAcks::Leader`], on a majority of the replicas with [`ProduceAcks::All`] (the
    /// owner's `Shard::await_replicated`, bounded by `deadline`; with one replica the leader's
    /// durability is the majority's). A control batch is refused (`ControlBatch`): only the
    /// broker writes those.
    pub async fn produce(
        &self,
        tp: TopicPartition,
        records: BytesMut,
        deadline: Instant,
        acks: ProduceAcks,
    ) -> Result<Vec<Offset>, PartitionError> {
        let owner = self.owner(&tp)?;
        if owner == self.shard.id {
            return self.shard.produce_local(&tp, records, deadline, acks).await;
        }
        let call = Call::Produce {
            tp,
            records,
            deadline,
            acks,
        };
        match self.call(owner, call).await? {
            Reply::Produce(r) => r,
            _ => unreachable!("produce gets a produce reply"),
        }
    }

    /// Reads a partition; waits up to `spec.max_wait` for `spec.min_bytes`.
    pub async fn fetch(
        &self,
        tp: TopicPartition,
        spec: FetchSpec,
    ) -> Result<Fetched, PartitionError> {
        let owner = self.owner(&tp)?;
        if owner == self.shard.id {
            return self.shard.fetch_local(&tp, spec).await;
        }
        match self.call(owner, Call::Fetch(tp, spec)).await? {
            Reply::Fetch(r) => r,
            _ => unreachable!("fetch gets a fetch reply"),
        }
    }

    /// The offset `query` asks for; `None` when no record is at or after the time asked.
    pub async fn list_offset(
        &self,
        tp: TopicPartition,
        query: OffsetQuery,
    ) -> Result<Option<Offset>, PartitionError> {
        let owner = self.owner(&tp)?;
        if owner == self.shard.id {
            return self.shard.list_offset_local(&tp, query).await;
        }
        match self.call(owner, Call::ListOffset(tp, query)).await? {
            Reply::Offset(r) => r,
            _ => unreachable!("list offset gets an offset reply"),
        }
    }

    /// Every partition of `topics` (`None`: all) that its owner serves or failed to open,
    /// gathered from every shard, by topic and partition.
    pub async fn partition_info(&self, topics: Option<Vec<String>>) -> Vec<PartitionInfo> {
        let shard = &self.shard;
        let mut out = shard.local_partition_info(topics.as_deref());
        let mesh = shard.mesh();
        let mut calls = Vec::new();
        for s in 0..shard.shard_count {
            let s = ShardId(s as u16);
            if s == shard.id {
                continue;
            }
            let mesh = mesh.clone();
            let topics = topics.clone();
            calls.push(glommio::spawn_local(async move {
                mesh.call(s, Call::PartitionInfo { topics }).await
            }));
        }
        for c in calls {
            if let Ok(Reply::PartitionInfo(v)) = c.await {
                out.extend(v);
            }
        }
        out.sort_by(|a, b| a.tp.cmp(&b.tp));
        out
    }
}
