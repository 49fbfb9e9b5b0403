//! The partition service: routes each operation to the shard its partition's recorded placement
//! names, running it here or on the owner through the mesh.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::super::call::{Call, Reply};
use super::super::catalog::{validate_topic_name, CatalogError};
use super::super::core::Shard;
use super::super::error::PartitionError;
use super::types::{FetchSpec, Fetched, OffsetQuery, PartitionInfo};
use crate::types::{Offset, ShardId, TopicPartition};

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

    /// The shard the recorded placement names for `tp` (this broker is the only node).
    fn owner(&self, tp: &TopicPartition) -> Result<ShardId, PartitionError> {
        check_topic_name(&tp.topic)?;
        self.shard
            .placement(tp)
            .map(|p| p.shard)
            .ok_or_else(|| PartitionError::UnknownPartition(tp.clone()))
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
    /// appended, the answer waits for their durability.
    pub async fn produce(
        &self,
        tp: TopicPartition,
        records: BytesMut,
        deadline: Instant,
    ) -> Result<Vec<Offset>, PartitionError> {
        let owner = self.owner(&tp)?;
        if owner == self.shard.id {
            return self.shard.produce_local(&tp, records, deadline).await;
        }
        let call = Call::Produce {
            tp,
            records,
            deadline,
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
