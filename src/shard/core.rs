//! A shard: one pinned glommio executor that owns a set of partitions outright (their logs, their
//! share of the batch cache) and serves any request, running it locally or calling the owner.
//!
//! A `Shard` lives on its executor in an `Rc`; it is never shared with another thread. Shard 0 is
//! also the controller: the only writer of the topic catalog. The partition operations are in
//! `partition/` (the service every protocol calls), topic create and delete in `topics.rs`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use glommio::sync::Semaphore;

use super::call::{Call, Reply};
use super::catalog::{Catalog, TopicMeta};
use super::error::PartitionError;
use super::fds::FdBudget;
use super::mesh::{CallHandler, Mesh};
use super::placement::Placement;
use crate::config::BrokerConfig;
use crate::disk::{BatchCache, FileCache, PartitionLog};
use crate::local::Event;
use crate::types::{ShardId, TopicPartition};

/// Addresses of this broker, known once every shard has bound its listeners.
#[derive(Clone, Debug)]
pub struct Ports {
    pub host: String,
    pub common_port: u16,
    pub shard_ports: Vec<u16>,
}

type Logs = AHashMap<TopicPartition, Rc<PartitionLog>>;

pub struct Shard {
    pub id: ShardId,
    pub shard_count: usize,
    pub config: Rc<BrokerConfig>,
    pub ports: Ports,
    pub(super) data_dir: PathBuf,
    pub(super) cache: Rc<BatchCache>,
    /// Open sealed-segment files, shared by this shard's logs.
    pub(super) files: Rc<FileCache>,
    pub(super) fds: FdBudget,
    /// This shard's copy of the catalog: topics and where each partition lives.
    pub(super) catalog: RefCell<Catalog>,
    pub(super) logs: RefCell<Logs>,
    /// Partitions this shard owns but could not open (file descriptors, disk errors): requests
    /// for them get this error.
    pub(super) unopened: RefCell<AHashMap<TopicPartition, PartitionError>>,
    /// Topics being created: their partitions are open but not served, and the topic is not in
    /// this shard's catalog, until the controller commits the create (`Call::CommitTopic`). So
    /// nothing can be acknowledged on a topic whose create is then rolled back.
    pub(super) pending: RefCell<AHashSet<String>>,
    mesh: RefCell<Option<Rc<Mesh>>>,
    /// One catalog change at a time (controller only).
    pub(super) admin: Semaphore,
    /// Set at shutdown: new client requests are refused and long polls return.
    pub(super) shutting_down: Cell<bool>,
    /// Set once every shard has drained its clients: logs are closing, calls are refused.
    pub(super) closed: Cell<bool>,
    /// Client requests being served; shutdown waits for it to reach zero.
    inflight: Cell<usize>,
    idle: Event,
    /// Notified when shutdown starts, so long polls return at once.
    pub(super) stopping: Event,
    /// A cluster node's replication (`--peers`); `None` on a single-node broker.
    pub(crate) cluster: Option<super::replicas::ClusterState>,
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

impl Shard {
    /// Creates the shard and opens the partitions it owns. Runs on the shard's executor.
    pub async fn open(
        id: ShardId,
        shard_count: usize,
        config: Rc<BrokerConfig>,
        ports: Ports,
        link: Option<crate::replication::driver::ShardLink>,
    ) -> Result<Rc<Shard>, String> {
        let data_dir = config.data_dir.clone();
        crate::disk::probe::prime(&data_dir)
            .await
            .map_err(|e| format!("cannot prime direct I/O on {}: {e}", data_dir.display()))?;
        // A cluster node's topics come from the cluster metadata, not `catalog.json`.
        let cluster = link.map(|link| {
            super::replicas::ClusterState::start(
                crate::types::NodeId(config.node_id),
                super::replicas::replica_config(&config),
                link,
            )
        });
        let mut catalog = if cluster.is_some() {
            Catalog::default()
        } else {
            Catalog::load(&data_dir)?
        };
        check_placement(&catalog, shard_count)?;
        // Settled for this count at start; also what a first catalog records.
        catalog.shards = Some(shard_count);
        let fds = FdBudget::current(shard_count, config.open_segment_files_max);
        let shard = Rc::new(Shard {
            id,
            shard_count,
            cache: Rc::new(BatchCache::new(config.batch_cache_bytes_max)),
            files: Rc::new(FileCache::new(fds.segment_files_max)),
            fds,
            unopened: RefCell::new(AHashMap::new()),
            pending: RefCell::new(AHashSet::new()),
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
            cluster,
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
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::error!(shard = %id, unopened, partitions_max = fds.partitions_max,
                nofile = fds.nofile, first = %first,
                "partitions not opened; requests for them fail with the reason");
        }
        if id.0 == 0 && shard.cluster.is_none() {
            shard.remove_deleted_dirs().await;
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

    /// A cluster node, once the mesh is up: shard 0 opens the metadata group (whose applied
    /// state then starts every shard's replicas); every shard reports what it leads.
    pub(crate) async fn start_cluster(self: &Rc<Self>) -> Result<(), String> {
        if self.cluster.is_none() {
            return Ok(());
        }
        if self.id.0 == 0 {
            self.start_metadata().await?;
        }
        glommio::spawn_local(self.clone().report_loop()).detach();
        Ok(())
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    pub(super) fn mesh(&self) -> Rc<Mesh> {
        self.mesh.borrow().clone().expect("mesh connected at start")
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

    /// Where `tp` lives, as the catalog records it; `None` for a partition of no (served)
    /// topic.
    pub fn placement(&self, tp: &TopicPartition) -> Option<Placement> {
        self.catalog
            .borrow()
            .topics
            .get(&tp.topic)
            .and_then(|m| m.placement(tp.partition.0))
            .cloned()
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
        self.close_replicas().await;
        let logs: Vec<(TopicPartition, Rc<PartitionLog>)> =
            self.logs.borrow_mut().drain().collect();
        for (tp, log) in logs {
            match Rc::try_unwrap(log) {
                Ok(log) => {
                    if let Err(e) = log.close().await {
                        tracing::error!(%tp, error = %e, "close failed");
                    }
                }
                Err(_) => tracing::warn!(%tp, "log still in use at shutdown"),
            }
        }
        if let Some(m) = self.mesh.borrow().as_ref() {
            m.close();
        }
        tracing::info!(shard = %self.id, "shard stopped");
    }
}

/// The placement every shard reads must name shards that exist: the main thread settled it for
/// this shard count before any shard started (`catalog::check_at_start`).
fn check_placement(catalog: &Catalog, shard_count: usize) -> Result<(), String> {
    for meta in catalog.topics.values() {
        let placed = meta.placement.len() == meta.partitions as usize
            && meta
                .placement
                .iter()
                .all(|p| usize::from(p.shard.0) < shard_count);
        if !placed {
            return Err(format!(
                "the catalog's placement of topic {} does not fit {shard_count} shards",
                meta.name
            ));
        }
    }
    Ok(())
}

impl CallHandler for Shard {
    fn handle(self: Rc<Self>, call: Call) -> Pin<Box<dyn Future<Output = Reply>>> {
        Box::pin(async move {
            match call {
                Call::Produce {
                    tp,
                    records,
                    deadline,
                    acks,
                } => Reply::Produce(self.produce_local(&tp, records, deadline, acks).await),
                Call::Fetch(tp, spec) => Reply::Fetch(self.fetch_local(&tp, spec).await),
                Call::ListOffset(tp, query) => {
                    Reply::Offset(self.list_offset_local(&tp, query).await)
                }
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
                Call::Cluster(update) => self.handle_cluster_update(*update).await,
                Call::ForwardMeta(batch) => self.handle_forward(batch),
            }
        })
    }
}
