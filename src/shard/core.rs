//! A shard: one pinned glommio executor that owns a set of partitions outright (their logs, their
//! share of the batch cache) and serves any request, running it locally or calling the owner.
//!
//! A `Shard` lives on its executor in an `Rc`; it is never shared with another thread. Shard 0 is
//! also the controller: the only writer of the topic catalog.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::BytesMut;
use glommio::sync::Semaphore;

use super::call::{
    Call, CallError, FetchPartition, FetchedPartition, PartitionInfo, Reply, TopicRequest,
};
use super::catalog::{Catalog, CatalogError, TopicMeta};
use super::mesh::{CallHandler, Mesh};
use super::ownership::owner_shard;
use crate::config::BrokerConfig;
use crate::disk::{system_clock, BatchCache, LogError, LogOptions, PartitionLog};
use crate::local::Event;
use crate::net::error_code::ErrorCode;
use crate::record::{self, BatchError};
use crate::types::{Epoch, Offset, ShardId};

/// The leader epoch a single-node broker stamps into batches. Replication will own this.
const SINGLE_NODE_EPOCH: Epoch = Epoch(0);

/// Addresses of this broker, known once every shard has bound its listeners.
#[derive(Clone, Debug)]
pub struct Ports {
    pub host: String,
    pub common_port: u16,
    pub shard_ports: Vec<u16>,
}

type Logs = AHashMap<(String, u32), Rc<PartitionLog>>;

pub struct Shard {
    pub id: ShardId,
    pub shard_count: usize,
    pub config: Rc<BrokerConfig>,
    pub ports: Ports,
    data_dir: PathBuf,
    cache: Rc<BatchCache>,
    catalog: RefCell<Catalog>,
    logs: RefCell<Logs>,
    mesh: RefCell<Option<Rc<Mesh>>>,
    /// One catalog change at a time (controller only).
    admin: Semaphore,
    /// Set at shutdown: new client requests are refused and long polls return.
    shutting_down: Cell<bool>,
    /// Set once every shard has drained its clients: logs are closing, calls are refused.
    closed: Cell<bool>,
    /// Client requests being served; shutdown waits for it to reach zero.
    inflight: Cell<usize>,
    idle: Event,
    /// Notified when shutdown starts, so long polls return at once.
    stopping: Event,
}

/// Counts a request as in flight while alive.
pub struct InflightGuard {
    shard: Rc<Shard>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let n = self.shard.inflight.get() - 1;
        self.shard.inflight.set(n);
        if n == 0 {
            self.shard.idle.notify();
        }
    }
}

pub(crate) fn log_error(e: &LogError) -> CallError {
    let code = match e {
        LogError::InvalidBatch(BatchError::TooLarge { .. }) => ErrorCode::MessageTooLarge,
        LogError::InvalidBatch(_) => ErrorCode::CorruptMessage,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::CorruptSegment { .. } => ErrorCode::CorruptStoredData,
        LogError::Io { .. } | LogError::Poisoned { .. } => ErrorCode::StorageError,
        LogError::StaleEpoch { .. } => ErrorCode::StaleLeaderEpoch,
        LogError::Closed => ErrorCode::BrokerShuttingDown,
        LogError::Truncated { .. }
        | LogError::TruncateBelowHighWatermark { .. }
        | LogError::TruncateInsideBatch { .. }
        | LogError::Repair { .. }
        | LogError::Config(_) => ErrorCode::UnknownServerError,
    };
    CallError::new(code, e.to_string())
}

fn catalog_error(e: CatalogError) -> CallError {
    let code = match &e {
        CatalogError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
        CatalogError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
        CatalogError::InvalidName { .. } => ErrorCode::InvalidTopicName,
        CatalogError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        CatalogError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        CatalogError::Io(_) => ErrorCode::StorageError,
    };
    CallError::new(code, e.to_string())
}

fn gone(shard: ShardId) -> CallError {
    CallError::new(
        ErrorCode::BrokerShuttingDown,
        format!("shard {shard} is shutting down"),
    )
}

fn unknown_partition(topic: &str, partition: u32) -> CallError {
    CallError::new(
        ErrorCode::UnknownTopicOrPartition,
        format!("unknown topic or partition {topic}-{partition}"),
    )
}

impl Shard {
    /// Creates the shard and opens the partitions it owns. Runs on the shard's executor.
    pub async fn open(
        id: ShardId,
        shard_count: usize,
        config: Rc<BrokerConfig>,
        ports: Ports,
    ) -> Result<Rc<Shard>, String> {
        let data_dir = config.data_dir.clone();
        crate::disk::probe::prime(&data_dir)
            .await
            .map_err(|e| format!("cannot prime direct I/O on {}: {e}", data_dir.display()))?;
        let catalog = Catalog::load(&data_dir)?;
        let shard = Rc::new(Shard {
            id,
            shard_count,
            cache: Rc::new(BatchCache::new(config.batch_cache_bytes_max)),
            config,
            ports,
            data_dir,
            catalog: RefCell::new(catalog.clone()),
            logs: RefCell::new(AHashMap::new()),
            mesh: RefCell::new(None),
            admin: Semaphore::new(1),
            shutting_down: Cell::new(false),
            closed: Cell::new(false),
            inflight: Cell::new(0),
            idle: Event::new(),
            stopping: Event::new(),
        });
        for meta in catalog.topics.values() {
            shard
                .open_owned_partitions(meta)
                .await
                .map_err(|e| e.message)?;
        }
        if id.0 == 0 {
            shard.remove_deleted_dirs();
            shard.report_unexplained_dirs();
        }
        tracing::info!(shard = %id, partitions = shard.logs.borrow().len(), "shard opened");
        Ok(shard)
    }

    pub(crate) fn set_mesh(&self, mesh: Rc<Mesh>) {
        *self.mesh.borrow_mut() = Some(mesh);
    }

    fn mesh(&self) -> Rc<Mesh> {
        self.mesh.borrow().clone().expect("mesh connected at start")
    }

    /// Removes the directories of deleted topics (the catalog's tombstones: a crash or an
    /// error interrupted the delete), then forgets the tombstones whose directories are gone.
    /// Controller only. Never removes anything else.
    fn remove_deleted_dirs(&self) {
        let deleted = self.catalog.borrow().deleted.clone();
        let mut changed = false;
        for t in deleted {
            let mut all_gone = true;
            for dir in t.partition_dirs(&self.data_dir) {
                if !dir.exists() {
                    continue;
                }
                tracing::warn!(path = %dir.display(), "removing a partition directory of a deleted topic");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::error!(path = %dir.display(), error = %e, "cannot remove");
                    all_gone = false;
                }
            }
            if all_gone {
                changed |= self.catalog.borrow_mut().forget_deleted(t.id);
            }
        }
        if changed {
            if let Err(e) = self.catalog.borrow().store(&self.data_dir) {
                tracing::warn!(error = %e, "cannot persist the catalog; deleted topics stay listed");
            }
        }
    }

    /// Partition directories the catalog does not explain are kept (they may be data put back
    /// by hand, or an older topic's): reported once at start.
    fn report_unexplained_dirs(&self) {
        let Ok(dirs) = super::catalog::list_partition_dirs(&self.data_dir) else {
            return;
        };
        let catalog = self.catalog.borrow();
        for d in dirs {
            let explained = super::catalog::parse_partition_dir(&d).is_some_and(|(t, id, p)| {
                catalog
                    .topics
                    .get(&t)
                    .is_some_and(|m| m.id == id && p < m.partitions)
            });
            if !explained {
                tracing::warn!(dir = %d, "partition directory not in the catalog; kept, not served");
            }
        }
    }

    pub fn owner(&self, topic: &str, partition: u32) -> ShardId {
        owner_shard(topic, partition, self.shard_count)
    }

    pub fn catalog(&self) -> Catalog {
        self.catalog.borrow().clone()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.catalog.borrow().topics.get(name).cloned()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin_request(self: &Rc<Self>) -> InflightGuard {
        self.inflight.set(self.inflight.get() + 1);
        InflightGuard {
            shard: self.clone(),
        }
    }

    async fn open_owned_partitions(&self, meta: &TopicMeta) -> Result<(), CallError> {
        let log_config = meta
            .config
            .log_config()
            .map_err(|e| CallError::new(ErrorCode::InvalidConfig, e))?;
        for p in 0..meta.partitions {
            if self.owner(&meta.name, p) != self.id {
                continue;
            }
            let key = (meta.name.clone(), p);
            if self.logs.borrow().contains_key(&key) {
                continue;
            }
            let dir = meta.partition_dir(&self.data_dir, p);
            let options = LogOptions {
                config: log_config.clone(),
                cache: self.cache.clone(),
                clock: system_clock(),
            };
            let (log, report) = PartitionLog::open(&dir, options)
                .await
                .map_err(|e| log_error(&e))?;
            for (path, first, last) in &report.corrupt {
                tracing::error!(path = %path.display(), %first, %last, "corrupt segment is not served");
            }
            self.logs.borrow_mut().insert(key, Rc::new(log));
        }
        self.catalog
            .borrow_mut()
            .topics
            .insert(meta.name.clone(), meta.clone());
        Ok(())
    }

    async fn drop_owned_partitions(&self, meta: &TopicMeta) {
        self.catalog.borrow_mut().topics.remove(&meta.name);
        for p in 0..meta.partitions {
            let log = self.logs.borrow_mut().remove(&(meta.name.clone(), p));
            if let Some(log) = log {
                match Rc::try_unwrap(log) {
                    Ok(log) => {
                        if let Err(e) = log.close().await {
                            tracing::warn!(error = %e, "closing a deleted partition");
                        }
                    }
                    // Still in use by a request: dropping the last handle stops its flusher.
                    Err(rc) => drop(rc),
                }
                let dir = meta.partition_dir(&self.data_dir, p);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove partition directory");
                }
            }
        }
    }

    fn local_log(&self, topic: &str, partition: u32) -> Result<Rc<PartitionLog>, CallError> {
        if self.closed.get() {
            return Err(gone(self.id));
        }
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
            .ok_or_else(|| unknown_partition(topic, partition))
    }

    // ---- produce ----

    /// Appends `records` (one or more batches) to a partition, here or on its owner.
    pub async fn produce(
        &self,
        topic: String,
        partition: u32,
        records: BytesMut,
    ) -> Result<Vec<i64>, CallError> {
        let owner = self.owner(&topic, partition);
        if owner == self.id {
            return self.produce_local(&topic, partition, records).await;
        }
        match self
            .mesh()
            .call(
                owner,
                Call::Produce {
                    topic,
                    partition,
                    records,
                },
            )
            .await
        {
            Ok(Reply::Produce(r)) => r,
            Ok(_) => unreachable!("produce gets a produce reply"),
            Err(g) => Err(gone(g.0)),
        }
    }

    async fn produce_local(
        &self,
        topic: &str,
        partition: u32,
        mut records: BytesMut,
    ) -> Result<Vec<i64>, CallError> {
        let log = self.local_log(topic, partition)?;
        // Split into batches (zero-copy); each is fully validated by the log before any is
        // appended.
        let mut lens = Vec::new();
        for item in record::batches(&records) {
            match item {
                Ok((_, range)) => lens.push(range.len()),
                Err(e) => {
                    return Err(log_error(&LogError::InvalidBatch(e)));
                }
            }
        }
        if lens.is_empty() {
            return Err(CallError::new(
                ErrorCode::CorruptMessage,
                "produce request carries no record batch",
            ));
        }
        let mut batches = Vec::with_capacity(lens.len());
        for len in lens {
            batches.push(records.split_to(len));
        }
        let durability = log.config().durability;
        let infos = log
            .append_many(batches, SINGLE_NODE_EPOCH, durability)
            .await
            .map_err(|e| log_error(&e))?;
        Ok(infos.iter().map(|i| i.base_offset.0 as i64).collect())
    }

    // ---- fetch ----

    /// Reads a partition, here or on its owner; waits up to `max_wait_ms` for data.
    pub async fn fetch(&self, req: FetchPartition) -> Result<FetchedPartition, CallError> {
        let owner = self.owner(&req.topic, req.partition);
        if owner == self.id {
            return self.fetch_local(req).await;
        }
        match self.mesh().call(owner, Call::Fetch(req)).await {
            Ok(Reply::Fetch(r)) => r,
            Ok(_) => unreachable!("fetch gets a fetch reply"),
            Err(g) => Err(gone(g.0)),
        }
    }

    async fn fetch_local(&self, req: FetchPartition) -> Result<FetchedPartition, CallError> {
        let log = self.local_log(&req.topic, req.partition)?;
        let out_of_range = |e: &LogError| {
            let mut err = log_error(e);
            err.offsets = Some((
                log.log_start_offset().0 as i64,
                log.high_watermark().0 as i64,
                log.log_end_offset().0 as i64,
            ));
            err
        };
        if req.offset < 0 {
            return Err(out_of_range(&LogError::OffsetOutOfRange {
                requested: Offset(0),
                earliest: log.log_start_offset(),
                latest: log.high_watermark(),
            }));
        }
        let wait = Duration::from_millis(u64::from(
            req.max_wait_ms.min(self.config.limits.fetch_wait_ms_max),
        ));
        let deadline = Instant::now() + wait;
        let max_bytes = (req.max_bytes as usize).min(self.config.limits.fetch_bytes_max as usize);
        let min_bytes = (req.min_bytes as usize).clamp(1, max_bytes.max(1));
        loop {
            // Register before reading, so an append between the read and the wait is not missed.
            let changed = log.changed();
            let stopping = self.stopping.listen();
            let r = log
                .read(Offset(req.offset as u64), max_bytes)
                .await
                .map_err(|e| match e {
                    LogError::OffsetOutOfRange { .. } => out_of_range(&e),
                    other => log_error(&other),
                })?;
            let now = Instant::now();
            if r.bytes() >= min_bytes || now >= deadline || self.shutting_down.get() {
                return Ok(FetchedPartition {
                    batches: r.batches,
                    high_watermark: r.high_watermark.0 as i64,
                    log_start_offset: r.log_start_offset.0 as i64,
                    log_end_offset: r.log_end_offset.0 as i64,
                });
            }
            let timer = glommio::timer::sleep(deadline - now);
            futures_lite::future::or(futures_lite::future::or(changed, stopping), timer).await;
        }
    }

    // ---- offsets and metadata ----

    /// `timestamp`: -1 latest (high watermark), -2 earliest, else the first offset whose record
    /// timestamp is at or after it (-1 when there is none).
    pub async fn list_offset(
        &self,
        topic: String,
        partition: u32,
        timestamp: i64,
    ) -> Result<i64, CallError> {
        let owner = self.owner(&topic, partition);
        if owner != self.id {
            return match self
                .mesh()
                .call(
                    owner,
                    Call::ListOffset {
                        topic,
                        partition,
                        timestamp,
                    },
                )
                .await
            {
                Ok(Reply::Offset(r)) => r,
                Ok(_) => unreachable!("list offset gets an offset reply"),
                Err(g) => Err(gone(g.0)),
            };
        }
        let log = self.local_log(&topic, partition)?;
        match timestamp {
            -1 => Ok(log.high_watermark().0 as i64),
            -2 => Ok(log.log_start_offset().0 as i64),
            t if t < 0 => Err(CallError::new(
                ErrorCode::InvalidRequest,
                format!("timestamp {t} is neither -1 (latest), -2 (earliest) nor a time"),
            )),
            t => Ok(log
                .offset_for_timestamp(t)
                .await
                .map_err(|e| log_error(&e))?
                .map(|o| o.0 as i64)
                .unwrap_or(-1)),
        }
    }

    fn local_partition_info(&self, topics: Option<&[String]>) -> Vec<PartitionInfo> {
        let logs = self.logs.borrow();
        let mut out = Vec::new();
        for ((topic, partition), log) in logs.iter() {
            if topics.is_some_and(|t| !t.iter().any(|x| x == topic)) {
                continue;
            }
            out.push(PartitionInfo {
                topic: topic.clone(),
                partition: *partition,
                leader_epoch: log.last_epoch().0.max(SINGLE_NODE_EPOCH.0),
                log_start_offset: log.log_start_offset().0 as i64,
                high_watermark: log.high_watermark().0 as i64,
                log_end_offset: log.log_end_offset().0 as i64,
            });
        }
        out
    }

    /// Offsets of every partition of `topics` (`None`: all), gathered from every shard.
    pub async fn partition_info(&self, topics: Option<Vec<String>>) -> Vec<PartitionInfo> {
        let mut out = self.local_partition_info(topics.as_deref());
        let mesh = self.mesh();
        let mut calls = Vec::new();
        for s in 0..self.shard_count {
            let s = ShardId(s as u16);
            if s == self.id {
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
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    // ---- topics ----

    pub async fn create_topic(&self, req: TopicRequest) -> Result<(), CallError> {
        if self.id.0 == 0 {
            return self.controller_create(req).await;
        }
        match self.mesh().call(ShardId(0), Call::CreateTopic(req)).await {
            Ok(Reply::Admin(r)) => r,
            Ok(_) => unreachable!("admin call gets an admin reply"),
            Err(g) => Err(gone(g.0)),
        }
    }

    pub async fn delete_topic(&self, name: String) -> Result<(), CallError> {
        if self.id.0 == 0 {
            return self.controller_delete(name).await;
        }
        match self
            .mesh()
            .call(ShardId(0), Call::DeleteTopic { name })
            .await
        {
            Ok(Reply::Admin(r)) => r,
            Ok(_) => unreachable!("admin call gets an admin reply"),
            Err(g) => Err(gone(g.0)),
        }
    }

    /// Controller: persist the new catalog, then have every shard open its partitions.
    async fn controller_create(&self, req: TopicRequest) -> Result<(), CallError> {
        let _permit = self
            .admin
            .acquire_permit(1)
            .await
            .map_err(|_| gone(self.id))?;
        let mut next = self.catalog.borrow().clone();
        let meta = next
            .create(&req.name, req.partitions, req.config)
            .map_err(catalog_error)?;
        next.store(&self.data_dir).map_err(catalog_error)?;
        self.catalog.borrow_mut().next_topic_id = next.next_topic_id;
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "creating topic");
        self.broadcast(|| Call::OpenTopic(meta.clone())).await?;
        self.open_owned_partitions(&meta).await
    }

    /// Controller: persist the catalog without the topic, then have every shard drop it.
    async fn controller_delete(&self, name: String) -> Result<(), CallError> {
        let _permit = self
            .admin
            .acquire_permit(1)
            .await
            .map_err(|_| gone(self.id))?;
        let mut next = self.catalog.borrow().clone();
        let meta = next.delete(&name).map_err(catalog_error)?;
        // The tombstone is durable before any directory goes: only recorded deletions remove
        // data, also after a crash in the middle.
        next.store(&self.data_dir).map_err(catalog_error)?;
        self.catalog.borrow_mut().deleted = next.deleted.clone();
        tracing::info!(topic = %name, "deleting topic");
        self.broadcast(|| Call::DropTopic(meta.clone())).await?;
        self.drop_owned_partitions(&meta).await;
        self.remove_deleted_dirs();
        Ok(())
    }

    async fn broadcast(&self, call: impl Fn() -> Call) -> Result<(), CallError> {
        let mesh = self.mesh();
        let mut tasks = Vec::new();
        for s in 0..self.shard_count {
            let s = ShardId(s as u16);
            if s == self.id {
                continue;
            }
            let mesh = mesh.clone();
            let c = call();
            tasks.push(glommio::spawn_local(async move { mesh.call(s, c).await }));
        }
        for t in tasks {
            match t.await {
                Ok(Reply::Admin(r)) => r?,
                Ok(_) => unreachable!("admin call gets an admin reply"),
                Err(g) => return Err(gone(g.0)),
            }
        }
        Ok(())
    }

    // ---- background work and shutdown ----

    /// Applies retention to this shard's partitions every `retention_check_ms`.
    pub async fn retention_loop(self: Rc<Self>) {
        let period = Duration::from_millis(self.config.retention_check_ms.max(1));
        while !self.shutting_down.get() {
            glommio::timer::sleep(period).await;
            let logs: Vec<Rc<PartitionLog>> = self.logs.borrow().values().cloned().collect();
            for log in logs {
                if let Err(e) = log.enforce_retention().await {
                    tracing::warn!(dir = %log.dir().display(), error = %e, "retention failed");
                }
            }
        }
    }

    /// Shutdown, phase 1: refuse new client requests, wake long polls, and wait (bounded by
    /// `shutdown_wait_ms`) for this shard's client requests to finish. Calls from other shards
    /// are still served, since their clients may still be draining.
    pub async fn drain(self: &Rc<Self>) {
        self.shutting_down.set(true);
        self.stopping.notify();
        let deadline = Instant::now() + Duration::from_millis(self.config.limits.shutdown_wait_ms);
        loop {
            let listen = self.idle.listen();
            if self.inflight.get() == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(shard = %self.id, inflight = self.inflight.get(),
                    "shutdown wait expired with requests in flight");
                break;
            }
            futures_lite::future::or(listen, glommio::timer::sleep(deadline - now)).await;
        }
    }

    /// Shutdown, phase 2 (after every shard drained): sync and close every log, close the mesh.
    pub async fn close(self: &Rc<Self>) {
        self.closed.set(true);
        let logs: Vec<((String, u32), Rc<PartitionLog>)> = self.logs.borrow_mut().drain().collect();
        for ((topic, p), log) in logs {
            match Rc::try_unwrap(log) {
                Ok(log) => {
                    if let Err(e) = log.close().await {
                        tracing::error!(%topic, partition = p, error = %e, "close failed");
                    }
                }
                Err(_) => tracing::warn!(%topic, partition = p, "log still in use at shutdown"),
            }
        }
        if let Some(m) = self.mesh.borrow().as_ref() {
            m.close();
        }
        tracing::info!(shard = %self.id, "shard stopped");
    }
}

impl CallHandler for Shard {
    fn handle(self: Rc<Self>, call: Call) -> Pin<Box<dyn Future<Output = Reply>>> {
        Box::pin(async move {
            match call {
                Call::Produce {
                    topic,
                    partition,
                    records,
                } => Reply::Produce(self.produce_local(&topic, partition, records).await),
                Call::Fetch(req) => Reply::Fetch(self.fetch_local(req).await),
                Call::ListOffset {
                    topic,
                    partition,
                    timestamp,
                } => Reply::Offset(self.list_offset(topic, partition, timestamp).await),
                Call::PartitionInfo { topics } => {
                    Reply::PartitionInfo(self.local_partition_info(topics.as_deref()))
                }
                Call::CreateTopic(req) => Reply::Admin(self.controller_create(req).await),
                Call::DeleteTopic { name } => Reply::Admin(self.controller_delete(name).await),
                Call::OpenTopic(meta) => Reply::Admin(self.open_owned_partitions(&meta).await),
                Call::DropTopic(meta) => {
                    self.drop_owned_partitions(&meta).await;
                    Reply::Admin(Ok(()))
                }
            }
        })
    }
}
