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
use super::catalog::{Catalog, CatalogError, DeletedTopic, TopicMeta};
use super::mesh::{CallHandler, Mesh};
use super::ownership::owner_shard;
use crate::config::BrokerConfig;
use crate::disk::files::TRANSIENT_FDS_PER_SHARD;
use crate::disk::{system_clock, BatchCache, FileCache, LogError, LogOptions, PartitionLog};
use crate::local::Event;
use crate::net::error_code::ErrorCode;
use crate::record::{self, BatchError};
use crate::types::{Epoch, Offset, ShardId};

/// The leader epoch a single-node broker stamps into batches. Replication will own this.
const SINGLE_NODE_EPOCH: Epoch = Epoch(0);

/// File descriptors an open partition holds steadily: its active segment's `.log`, `.index` and
/// `.timeindex` (sealed segments' files are opened on read through the shard's file cache;
/// short-lived ones, for rolls and checkpoint writes, come from the shard's
/// [`TRANSIENT_FDS_PER_SHARD`]).
pub const FDS_PER_PARTITION: usize = 3;
/// Descriptors kept for the process (standard streams, signal pipe, catalog and epoch
/// checkpoint writes) and for each shard (io_uring rings and their eventfds, listeners, client
/// sockets) before partitions get any.
pub const FDS_RESERVED: u64 = 32;
pub const FDS_RESERVED_PER_SHARD: u64 = 64;

/// How one shard splits its share of the file descriptor limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The process's soft `RLIMIT_NOFILE`.
    pub nofile: u64,
    /// Partitions this shard may hold open.
    pub partitions_max: usize,
    /// Sealed-segment files its cache may hold open (`open_segment_files_max`, less if the
    /// limit is short).
    pub segment_files_max: usize,
}

impl FdBudget {
    /// The budget of one of `shards` shards under a soft limit of `nofile` descriptors.
    pub fn new(nofile: u64, shards: usize, open_segment_files_max: usize) -> FdBudget {
        let per_shard = (nofile.saturating_sub(FDS_RESERVED) / shards.max(1) as u64)
            .saturating_sub(FDS_RESERVED_PER_SHARD + TRANSIENT_FDS_PER_SHARD)
            as usize;
        let segment_files_max = open_segment_files_max.min(per_shard / 4).max(1);
        FdBudget {
            nofile,
            partitions_max: per_shard.saturating_sub(segment_files_max) / FDS_PER_PARTITION,
            segment_files_max,
        }
    }

    /// The budget under this process's current soft limit.
    pub fn current(shards: usize, open_segment_files_max: usize) -> FdBudget {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            1024
        };
        FdBudget::new(nofile, shards, open_segment_files_max)
    }
}

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
    /// Open sealed-segment files, shared by this shard's logs.
    files: Rc<FileCache>,
    fds: FdBudget,
    catalog: RefCell<Catalog>,
    logs: RefCell<Logs>,
    /// Partitions this shard owns but could not open (file descriptors, disk errors): requests
    /// for them get this error.
    unopened: RefCell<AHashMap<(String, u32), CallError>>,
    /// Topics being created: their partitions are open but not served, and the topic is not in
    /// this shard's catalog, until the controller commits the create (`Call::CommitTopic`). So
    /// nothing can be acknowledged on a topic whose create is then rolled back.
    pending: RefCell<ahash::AHashSet<String>>,
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
        LogError::AppendTimedOut { .. } => ErrorCode::RequestTimedOut,
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

/// Refuses a topic name that breaks the naming rules before it is looked up, so a client is
/// told INVALID_TOPIC_NAME rather than UNKNOWN_TOPIC_OR_PARTITION (`docs/PROTOCOL.md`, "APIs").
pub(crate) fn check_topic_name(name: &str) -> Result<(), CallError> {
    super::catalog::validate_topic_name(name).map_err(catalog_error)
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
        let fds = FdBudget::current(shard_count, config.open_segment_files_max);
        let shard = Rc::new(Shard {
            id,
            shard_count,
            cache: Rc::new(BatchCache::new(config.batch_cache_bytes_max)),
            files: Rc::new(FileCache::new(fds.segment_files_max)),
            fds,
            unopened: RefCell::new(AHashMap::new()),
            pending: RefCell::new(ahash::AHashSet::new()),
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
        // Whatever cannot be opened is served with its error; the rest is served.
        for meta in catalog.topics.values() {
            let _ = shard.open_owned_partitions(meta, false).await;
        }
        let unopened = shard.unopened.borrow().len();
        if unopened > 0 {
            let first = shard
                .unopened
                .borrow()
                .values()
                .next()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            tracing::error!(shard = %id, unopened, partitions_max = fds.partitions_max,
                nofile = fds.nofile, first = %first,
                "partitions not opened; requests for them fail with the reason");
        }
        if id.0 == 0 {
            shard.remove_deleted_dirs();
            shard.report_unexplained_dirs();
        }
        tracing::info!(shard = %id, partitions = shard.logs.borrow().len(),
            partitions_max = fds.partitions_max, segment_files_max = fds.segment_files_max,
            "shard opened");
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

    /// Opens the partitions of `meta` this shard owns. With `whole` (a topic being created) it
    /// is all or none: on the first failure the ones just opened are closed and the error
    /// returned. Without (at start), a partition that cannot be opened is recorded in
    /// `unopened` and the others are opened.
    async fn open_owned_partitions(&self, meta: &TopicMeta, whole: bool) -> Result<(), CallError> {
        let log_config = meta
            .config
            .log_config()
            .and_then(|c| self.config.log_config_for(c))
            .map_err(|e| CallError::new(ErrorCode::InvalidConfig, e))?;
        let mut opened = Vec::new();
        for p in 0..meta.partitions {
            if self.owner(&meta.name, p) != self.id {
                continue;
            }
            let key = (meta.name.clone(), p);
            if self.logs.borrow().contains_key(&key) {
                continue;
            }
            let outcome = if self.logs.borrow().len() >= self.fds.partitions_max {
                Err(self.no_room(&meta.name, p))
            } else {
                let dir = meta.partition_dir(&self.data_dir, p);
                let options = LogOptions {
                    config: log_config.clone(),
                    cache: self.cache.clone(),
                    files: self.files.clone(),
                    clock: system_clock(),
                };
                PartitionLog::open(&dir, options)
                    .await
                    .map_err(|e| self.open_error(&meta.name, p, &e))
            };
            match outcome {
                Ok((log, report)) => {
                    for (path, first, last) in &report.corrupt {
                        tracing::error!(path = %path.display(), %first, %last,
                            "damaged range: not served");
                    }
                    self.unopened.borrow_mut().remove(&key);
                    self.logs.borrow_mut().insert(key.clone(), Rc::new(log));
                    opened.push(key);
                }
                Err(e) if whole => {
                    for key in opened {
                        let log = self.logs.borrow_mut().remove(&key);
                        if let Some(Ok(log)) = log.map(Rc::try_unwrap) {
                            let _ = log.close().await;
                        }
                    }
                    return Err(e);
                }
                Err(e) => {
                    // Summed up once per shard at start (there may be thousands).
                    tracing::debug!(topic = %meta.name, partition = p, error = %e.message,
                        "partition not opened");
                    self.unopened.borrow_mut().insert(key, e);
                }
            }
        }
        if whole {
            // A create: served once the controller commits it.
            self.pending.borrow_mut().insert(meta.name.clone());
        } else {
            self.catalog
                .borrow_mut()
                .topics
                .insert(meta.name.clone(), meta.clone());
        }
        Ok(())
    }

    /// The controller committed the create of `meta`: serve its partitions.
    fn commit_topic(&self, meta: &TopicMeta) {
        self.pending.borrow_mut().remove(&meta.name);
        self.catalog
            .borrow_mut()
            .topics
            .insert(meta.name.clone(), meta.clone());
    }

    /// Why partition `p` of `topic` is not opened: no descriptors left in this shard's share.
    fn no_room(&self, topic: &str, p: u32) -> CallError {
        CallError::new(
            ErrorCode::StorageError,
            format!(
                "partition {topic}-{p} is not open: shard {} has room for {} partitions within \
                 the file descriptor limit ({}; {FDS_PER_PARTITION} descriptors per partition, {} \
                 for sealed-segment reads); raise the hard ulimit -n and restart",
                self.id, self.fds.partitions_max, self.fds.nofile, self.fds.segment_files_max
            ),
        )
    }

    fn open_error(&self, topic: &str, p: u32, e: &LogError) -> CallError {
        let mut err = log_error(e);
        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
            err.message = format!(
                "partition {topic}-{p} is not open: out of file descriptors (limit {}): {}",
                self.fds.nofile, err.message
            );
        } else {
            err.message = format!("partition {topic}-{p} is not open: {}", err.message);
        }
        err
    }

    /// Whether this shard can open every partition of `meta` it would own (the controller asks
    /// before creating a topic, so a create is refused whole rather than failing half-way).
    fn can_open(&self, meta: &TopicMeta) -> Result<(), CallError> {
        let n = (0..meta.partitions)
            .filter(|&p| self.owner(&meta.name, p) == self.id)
            .count();
        let open = self.logs.borrow().len();
        if open + n > self.fds.partitions_max {
            return Err(CallError::new(
                ErrorCode::StorageError,
                format!(
                    "topic {} needs {n} partitions on shard {}, which has room for {} more within \
                     the file descriptor limit ({}; {FDS_PER_PARTITION} descriptors per \
                     partition); raise the hard ulimit -n and restart, or create fewer partitions",
                    meta.name,
                    self.id,
                    self.fds.partitions_max.saturating_sub(open),
                    self.fds.nofile
                ),
            ));
        }
        Ok(())
    }

    /// Closes this shard's partitions of `meta` and, with `remove_dirs`, removes their
    /// directories (only for a deletion the catalog on disk recorded).
    async fn drop_owned_partitions(&self, meta: &TopicMeta, remove_dirs: bool) {
        self.catalog.borrow_mut().topics.remove(&meta.name);
        self.pending.borrow_mut().remove(&meta.name);
        self.unopened
            .borrow_mut()
            .retain(|(topic, _), _| *topic != meta.name);
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
                if !remove_dirs {
                    continue;
                }
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
        if let Some(e) = self.unopened.borrow().get(&(topic.to_string(), partition)) {
            return Err(e.clone());
        }
        if self.pending.borrow().contains(topic) {
            // Still being created: as unknown as it will stay if the create is rolled back.
            return Err(unknown_partition(topic, partition));
        }
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
            .ok_or_else(|| unknown_partition(topic, partition))
    }

    // ---- produce ----

    /// Appends `records` (one or more batches) to a partition, here or on its owner. If they
    /// cannot be appended by `deadline` they are not appended at all (REQUEST_TIMED_OUT); once
    /// appended, the answer waits for their durability.
    pub async fn produce(
        &self,
        topic: String,
        partition: u32,
        records: BytesMut,
        deadline: Instant,
    ) -> Result<Vec<i64>, CallError> {
        check_topic_name(&topic)?;
        let owner = self.owner(&topic, partition);
        if owner == self.id {
            return self
                .produce_local(&topic, partition, records, deadline)
                .await;
        }
        match self
            .mesh()
            .call(
                owner,
                Call::Produce {
                    topic,
                    partition,
                    records,
                    deadline,
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
        deadline: Instant,
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
            .append_many_by(batches, SINGLE_NODE_EPOCH, durability, Some(deadline))
            .await
            .map_err(|e| log_error(&e))?;
        Ok(infos.iter().map(|i| i.base_offset.0 as i64).collect())
    }

    // ---- fetch ----

    /// Reads a partition, here or on its owner; waits up to `max_wait_ms` for data.
    pub async fn fetch(&self, req: FetchPartition) -> Result<FetchedPartition, CallError> {
        check_topic_name(&req.topic)?;
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
        // 0 answers at once, even with nothing to return (`docs/PROTOCOL.md`, "6 Fetch").
        let min_bytes = (req.min_bytes as usize).min(max_bytes.max(1));
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
        check_topic_name(&topic)?;
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
        let pending = self.pending.borrow();
        let mut out = Vec::new();
        for ((topic, partition), log) in logs.iter() {
            if topics.is_some_and(|t| !t.iter().any(|x| x == topic)) || pending.contains(topic) {
                continue;
            }
            out.push(PartitionInfo {
                topic: topic.clone(),
                partition: *partition,
                leader_epoch: log.last_epoch().0.max(SINGLE_NODE_EPOCH.0),
                log_start_offset: log.log_start_offset().0 as i64,
                high_watermark: log.high_watermark().0 as i64,
                log_end_offset: log.log_end_offset().0 as i64,
                error: None,
                damaged: log
                    .damaged_ranges()
                    .iter()
                    .map(|r| (r.first.0 as i64, r.last.0 as i64))
                    .collect(),
            });
        }
        for ((topic, partition), e) in self.unopened.borrow().iter() {
            if topics.is_some_and(|t| !t.iter().any(|x| x == topic)) {
                continue;
            }
            out.push(PartitionInfo {
                topic: topic.clone(),
                partition: *partition,
                leader_epoch: -1,
                log_start_offset: -1,
                high_watermark: -1,
                log_end_offset: -1,
                error: Some(e.clone()),
                damaged: Vec::new(),
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
        check_topic_name(&name)?;
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
        // All or nothing: every shard must have room for its partitions before the topic is
        // written, and a shard that still fails to open them rolls the create back.
        self.broadcast(|| Call::CanOpen(meta.clone())).await?;
        self.can_open(&meta)?;
        next.store(&self.data_dir).map_err(catalog_error)?;
        self.catalog.borrow_mut().next_topic_id = next.next_topic_id;
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "creating topic");
        let opened = match self.broadcast(|| Call::OpenTopic(meta.clone())).await {
            Ok(()) => self.open_owned_partitions(&meta, true).await,
            Err(e) => Err(e),
        };
        if let Err(e) = opened {
            tracing::warn!(topic = %meta.name, error = %e.message, "create failed; rolling back");
            self.roll_back_create(&meta).await;
            return Err(e);
        }
        // Every shard has its partitions open: now they serve.
        self.broadcast(|| Call::CommitTopic(meta.clone())).await?;
        self.commit_topic(&meta);
        Ok(())
    }

    /// Undoes a create that some shard could not open: the catalog forgets the topic (with a
    /// tombstone until its directories are gone, so a crash here cleans up at start), every
    /// shard closes and removes what it opened.
    async fn roll_back_create(&self, meta: &TopicMeta) {
        let mut back = self.catalog.borrow().clone();
        back.topics.remove(&meta.name);
        back.deleted.push(DeletedTopic {
            name: meta.name.clone(),
            id: meta.id,
            partitions: meta.partitions,
        });
        // Directories go only once the catalog on disk no longer lists the topic. If that
        // cannot be written, the partitions are closed (nothing was served on them) and their
        // empty directories stay: a restart finds the topic the catalog still lists.
        let stored = back.store(&self.data_dir);
        if let Err(e) = &stored {
            tracing::error!(topic = %meta.name, error = %e,
                "cannot persist the rollback of a create; its directories are kept");
        } else {
            self.catalog.borrow_mut().deleted = back.deleted.clone();
        }
        let remove = stored.is_ok();
        if let Err(e) = self
            .broadcast(|| Call::DropTopic(meta.clone(), remove))
            .await
        {
            tracing::warn!(topic = %meta.name, error = %e.message, "rollback of a create");
        }
        self.drop_owned_partitions(meta, remove).await;
        if remove {
            self.remove_deleted_dirs();
        }
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
        self.broadcast(|| Call::DropTopic(meta.clone(), true))
            .await?;
        self.drop_owned_partitions(&meta, true).await;
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
        // Every shard answers before this returns, so a rollback never overtakes a call.
        let mut first = Ok(());
        for t in tasks {
            let r = match t.await {
                Ok(Reply::Admin(r)) => r,
                Ok(_) => unreachable!("admin call gets an admin reply"),
                Err(g) => Err(gone(g.0)),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
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
                    deadline,
                } => Reply::Produce(
                    self.produce_local(&topic, partition, records, deadline)
                        .await,
                ),
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
                Call::CanOpen(meta) => Reply::Admin(self.can_open(&meta)),
                Call::OpenTopic(meta) => {
                    Reply::Admin(self.open_owned_partitions(&meta, true).await)
                }
                Call::CommitTopic(meta) => {
                    self.commit_topic(&meta);
                    Reply::Admin(Ok(()))
                }
                Call::DropTopic(meta, remove_dirs) => {
                    self.drop_owned_partitions(&meta, remove_dirs).await;
                    Reply::Admin(Ok(()))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_budget_splits_the_limit_between_shards() {
        let b = FdBudget::new(256, 1, 256);
        assert_eq!((b.partitions_max, b.segment_files_max), (32, 32));
        let b = FdBudget::new(20_000, 2, 256);
        assert_eq!(b.segment_files_max, 256);
        assert_eq!(b.partitions_max, (9_984 - 64 - 32 - 256) / 3);
        // Every descriptor counted: reserve, segment files and partitions fit the limit.
        let used = FDS_RESERVED
            + 2 * (FDS_RESERVED_PER_SHARD
                + TRANSIENT_FDS_PER_SHARD
                + b.segment_files_max as u64
                + (b.partitions_max * FDS_PER_PARTITION) as u64);
        assert!(used <= 20_000, "{used}");
        // Too few descriptors for anything: no partition, no panic.
        assert_eq!(FdBudget::new(10, 4, 256).partitions_max, 0);
    }
}
