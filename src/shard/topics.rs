//! Topics on a shard: create and delete through the controller (shard 0, the only writer of the
//! catalog), and each shard's side of them: opening the partitions placed on it, serving them
//! once the controller commits, closing and removing them.

use std::rc::Rc;

use super::call::{Call, Reply, TopicRequest};
use super::catalog::{DeletedTopic, TopicMeta};
use super::core::Shard;
use super::error::{LogFailure, NotOpen, PartitionError, TopicError};
use crate::disk::{system_clock, LogError, LogOptions, PartitionLog};
use crate::types::{NodeId, ShardId, TopicPartition};

impl Shard {
    /// Topic admin is the metadata leader's: anywhere else it is refused with the leader as a
    /// hint (`NotController`), before anything is done.
    fn check_controller(&self) -> Result<(), TopicError> {
        match self.metadata_leader() {
            Some(node) if node == NodeId(self.config.node_id) => Ok(()),
            controller => Err(TopicError::NotController { controller }),
        }
    }

    pub async fn create_topic(&self, req: TopicRequest) -> Result<(), TopicError> {
        self.check_controller()?;
        if self.id.0 == 0 {
            return self.controller_create(req).await;
        }
        match self.mesh().call(ShardId(0), Call::CreateTopic(req)).await {
            Ok(Reply::Admin(r)) => r,
            Ok(_) => unreachable!("admin call gets an admin reply"),
            Err(g) => Err(TopicError::ShuttingDown(g.0)),
        }
    }

    pub async fn delete_topic(&self, name: String) -> Result<(), TopicError> {
        super::catalog::validate_topic_name(&name)?;
        self.check_controller()?;
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
            Err(g) => Err(TopicError::ShuttingDown(g.0)),
        }
    }

    /// Controller: persist the new catalog, then have every shard open its partitions.
    pub(super) async fn controller_create(&self, req: TopicRequest) -> Result<(), TopicError> {
        let _permit = self
            .admin
            .acquire_permit(1)
            .await
            .map_err(|_| TopicError::ShuttingDown(self.id))?;
        if self.cluster.is_some() {
            return self.cluster_create(req).await;
        }
        let me = NodeId(self.config.node_id);
        let replicas = self.choose_replicas(me, req.replication_factor)?;
        let mut next = self.catalog.borrow().clone();
        let meta = next.create_replicated(
            &req.name,
            req.partitions,
            req.config,
            self.shard_count,
            me,
            &replicas,
        )?;
        // All or nothing: every shard must have room for its partitions before the topic is
        // written, and a shard that still fails to open them rolls the create back.
        self.broadcast(|| Call::CanOpen(meta.clone())).await?;
        self.can_open(&meta)?;
        next.store(&self.data_dir).await?;
        self.catalog.borrow_mut().next_topic_id = next.next_topic_id;
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "creating topic");
        let opened = match self.broadcast(|| Call::OpenTopic(meta.clone())).await {
            Ok(()) => self.open_owned_partitions(&meta, true).await,
            Err(e) => Err(e),
        };
        if let Err(e) = opened {
            tracing::warn!(topic = %meta.name, error = %e, "create failed; rolling back");
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
        let stored = back.store(&self.data_dir).await;
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
            tracing::warn!(topic = %meta.name, error = %e, "rollback of a create");
        }
        self.drop_owned_partitions(meta, remove).await;
        if remove {
            self.remove_deleted_dirs().await;
        }
    }

    /// Controller: persist the catalog without the topic, then have every shard drop it.
    pub(super) async fn controller_delete(&self, name: String) -> Result<(), TopicError> {
        let _permit = self
            .admin
            .acquire_permit(1)
            .await
            .map_err(|_| TopicError::ShuttingDown(self.id))?;
        if self.cluster.is_some() {
            return self.cluster_delete(name).await;
        }
        let mut next = self.catalog.borrow().clone();
        let meta = next.delete(&name)?;
        // The tombstone is durable before any directory goes: only recorded deletions remove
        // data, also after a crash in the middle.
        next.store(&self.data_dir).await?;
        self.catalog.borrow_mut().deleted = next.deleted.clone();
        tracing::info!(topic = %name, "deleting topic");
        self.broadcast(|| Call::DropTopic(meta.clone(), true))
            .await?;
        self.drop_owned_partitions(&meta, true).await;
        self.remove_deleted_dirs().await;
        Ok(())
    }

    async fn broadcast(&self, call: impl Fn() -> Call) -> Result<(), TopicError> {
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
                Err(g) => Err(TopicError::ShuttingDown(g.0)),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Removes the directories of deleted topics (the catalog's tombstones: a crash or an
    /// error interrupted the delete), then forgets the tombstones whose directories are gone.
    /// Controller only. Never removes anything else.
    pub(super) async fn remove_deleted_dirs(&self) {
        let deleted = self.catalog.borrow().deleted.clone();
        let mut changed = false;
        for t in deleted {
            let mut all_gone = true;
            for dir in t.partition_dirs(&self.data_dir) {
                if !dir.exists() {
                    continue;
                }
                tracing::warn!(path = %dir.display(), "removing a partition directory of a deleted topic");
                if let Err(e) = remove_dir_all(&dir).await {
                    tracing::error!(path = %dir.display(), error = %e, "cannot remove");
                    all_gone = false;
                }
            }
            if all_gone {
                changed |= self.catalog.borrow_mut().forget_deleted(t.id);
            }
        }
        if changed {
            let catalog = self.catalog.borrow().clone();
            if let Err(e) = catalog.store(&self.data_dir).await {
                tracing::warn!(error = %e, "cannot persist the catalog; deleted topics stay listed");
            }
        }
    }

    /// Opens the partitions of `meta` placed on this shard. With `whole` (a topic being
    /// created) it is all or none: on the first failure the ones just opened are closed and the
    /// error returned. Without (at start), a partition that cannot be opened is recorded in
    /// `unopened` and the others are opened.
    pub(super) async fn open_owned_partitions(
        &self,
        meta: &TopicMeta,
        whole: bool,
    ) -> Result<(), TopicError> {
        let log_config = meta
            .config
            .log_config()
            .and_then(|c| self.config.log_config_for(c))
            .map_err(TopicError::InvalidConfig)?;
        let mut opened = Vec::new();
        for p in meta.partitions_on(self.id) {
            let tp = TopicPartition::new(meta.name.as_str(), p);
            if self.logs.borrow().contains_key(&tp) {
                continue;
            }
            let outcome = if self.logs.borrow().len() >= self.fds.partitions_max {
                Err(self.no_room(&tp))
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
                    .map_err(|e| self.open_error(&tp, &e))
            };
            match outcome {
                Ok((log, report)) => {
                    for (path, first, last) in &report.corrupt {
                        tracing::error!(path = %path.display(), %first, %last,
                            "damaged range: not served");
                    }
                    self.unopened.borrow_mut().remove(&tp);
                    self.logs.borrow_mut().insert(tp.clone(), Rc::new(log));
                    opened.push(tp);
                }
                Err(e) if whole => {
                    for tp in opened {
                        let log = self.logs.borrow_mut().remove(&tp);
                        if let Some(Ok(log)) = log.map(Rc::try_unwrap) {
                            let _ = log.close().await;
                        }
                    }
                    return Err(e.into());
                }
                Err(e) => {
                    // Summed up once per shard at start (there may be thousands).
                    tracing::debug!(%tp, error = %e, "partition not opened");
                    self.unopened.borrow_mut().insert(tp, e);
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
    pub(super) fn commit_topic(&self, meta: &TopicMeta) {
        self.pending.borrow_mut().remove(&meta.name);
        self.catalog
            .borrow_mut()
            .topics
            .insert(meta.name.clone(), meta.clone());
    }

    /// Why `tp` is not opened: no descriptors left in this shard's share.
    pub(super) fn no_room(&self, tp: &TopicPartition) -> PartitionError {
        PartitionError::NotOpen {
            tp: tp.clone(),
            reason: NotOpen::NoRoom {
                shard: self.id,
                partitions_max: self.fds.partitions_max,
                nofile: self.fds.nofile,
                segment_files_max: self.fds.segment_files_max,
            },
        }
    }

    pub(super) fn open_error(&self, tp: &TopicPartition, e: &LogError) -> PartitionError {
        let (failure, message) = (LogFailure::of(e), e.to_string());
        let reason = if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
            NotOpen::OutOfFds {
                nofile: self.fds.nofile,
                failure,
                message,
            }
        } else {
            NotOpen::Log { failure, message }
        };
        PartitionError::NotOpen {
            tp: tp.clone(),
            reason,
        }
    }

    /// Whether this shard can open every partition of `meta` placed on it (the controller asks
    /// before creating a topic, so a create is refused whole rather than failing half-way).
    pub(super) fn can_open(&self, meta: &TopicMeta) -> Result<(), TopicError> {
        let needs = meta.partitions_on(self.id).count();
        let open = self.logs.borrow().len();
        if open + needs > self.fds.partitions_max {
            return Err(TopicError::NoRoom {
                topic: meta.name.clone(),
                needs,
                shard: self.id,
                room: self.fds.partitions_max.saturating_sub(open),
                nofile: self.fds.nofile,
            });
        }
        Ok(())
    }

    /// Closes this shard's partitions of `meta` and, with `remove_dirs`, removes their
    /// directories (only for a deletion the catalog on disk recorded).
    pub(super) async fn drop_owned_partitions(&self, meta: &TopicMeta, remove_dirs: bool) {
        self.catalog.borrow_mut().topics.remove(&meta.name);
        self.pending.borrow_mut().remove(&meta.name);
        self.unopened
            .borrow_mut()
            .retain(|tp, _| tp.topic != meta.name);
        for p in 0..meta.partitions {
            let log = self
                .logs
                .borrow_mut()
                .remove(&TopicPartition::new(meta.name.as_str(), p));
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
                if let Err(e) = remove_dir_all(&dir).await {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot remove partition directory");
                }
            }
        }
    }
}

/// Removes a partition directory on the executor's blocking pool: a directory of many segments
/// takes many `unlink`s, which would otherwise stall every partition of the shard.
pub(super) async fn remove_dir_all(dir: &std::path::Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::remove_dir_all(dir))
        .await
}
