//! The topic catalog: names, partition counts, per-topic log settings and where every partition
//! lives ([`Placement`]), persisted in `<data dir>/catalog.json`.
//!
//! Shard 0 (the controller) is the only writer while the broker runs: it applies a change, writes
//! the file atomically with glommio I/O (temporary file, fdatasync, rename, fsync of the
//! directory; the shard is not blocked) and then tells every shard. Every shard holds its own
//! copy, read-only, to route requests and answer metadata requests. Before any shard starts, the
//! main thread settles the placement for this broker's shard count ([`check_at_start`]).
//!
//! Partition directories are data: the broker removes one only for a topic whose deletion the
//! catalog recorded (a tombstone in `deleted`, kept until its directories are gone). A missing
//! catalog with partition directories on disk is refused at start ([`check_at_start`]) rather
//! than read as "no topics"; `--rebuild-catalog` rebuilds it from the directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::placement::{self, Placement, Settled};
use crate::disk::{Durability, LogConfig};
use crate::types::{NodeId, ShardId};

/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;
pub const CATALOG_FILE: &str = "catalog.json";

/// A topic's log settings as stored (the broker defaults already applied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub durability: String,
    pub flush_ms: u64,
    pub index_interval_bytes: u64,
    pub batch_bytes_max: usize,
}

impl TopicConfig {
    pub fn from_log_config(c: &LogConfig) -> Self {
        TopicConfig {
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            durability: match c.durability {
                Durability::Sync => "sync".into(),
                Durability::Interval => "interval".into(),
            },
            flush_ms: c.flush_ms,
            index_interval_bytes: c.index_interval_bytes,
            batch_bytes_max: c.batch_bytes_max,
        }
    }

    pub fn log_config(&self) -> Result<LogConfig, String> {
        let c = LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            durability: self.durability.parse()?,
            flush_ms: self.flush_ms,
            index_interval_bytes: self.index_interval_bytes,
            batch_bytes_max: self.batch_bytes_max,
            ..LogConfig::default()
        };
        c.validate()?;
        Ok(c)
    }
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Distinguishes a topic from an earlier one of the same name (its directories too).
    pub id: u64,
    pub partitions: u32,
    pub config: TopicConfig,
    /// Where each partition lives, by partition number. Empty in a catalog written before
    /// placement was recorded (or rebuilt from directories) until [`check_at_start`] settles it.
    #[serde(default)]
    pub placement: Vec<Placement>,
}

impl TopicMeta {
    /// Directory of one partition's log.
    pub fn partition_dir(&self, data_dir: &Path, partition: u32) -> PathBuf {
        partition_dir(data_dir, &self.name, self.id, partition)
    }

    /// Where `partition` lives; `None` for a partition the topic does not have.
    pub fn placement(&self, partition: u32) -> Option<&Placement> {
        self.placement.get(partition as usize)
    }

    /// The partitions of this topic that `shard` owns.
    pub fn partitions_on(&self, shard: ShardId) -> impl Iterator<Item = u32> + '_ {
        (0..self.partitions).filter(move |&p| self.placement(p).is_some_and(|l| l.shard == shard))
    }
}

/// A deleted topic whose partition directories may still be on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTopic {
    pub name: String,
    pub id: u64,
    pub partitions: u32,
}

impl DeletedTopic {
    pub fn partition_dirs(&self, data_dir: &Path) -> Vec<PathBuf> {
        (0..self.partitions)
            .map(|p| partition_dir(data_dir, &self.name, self.id, p))
            .collect()
    }
}

/// All topics of the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub topics: BTreeMap<String, TopicMeta>,
    /// The id the next created topic gets.
    pub next_topic_id: u64,
    /// Deleted topics whose directories may remain (a crash during the delete): the only
    /// directories the broker ever removes.
    #[serde(default)]
    pub deleted: Vec<DeletedTopic>,
    /// The shard count the placement was last settled for (absent in catalogs from before
    /// placement). A placement missing from a topic is derived with the hash for this count.
    #[serde(default)]
    pub shards: Option<usize>,
}

fn partition_dir(data_dir: &Path, name: &str, id: u64, partition: u32) -> PathBuf {
    data_dir
        .join("topics")
        .join(format!("{name}-{id}-{partition}"))
}

/// Splits a partition directory name `<topic>-<id>-<partition>` (topic names may hold `-`).
pub fn parse_partition_dir(name: &str) -> Option<(String, u64, u32)> {
    let (rest, partition) = name.rsplit_once('-')?;
    let (topic, id) = rest.rsplit_once('-')?;
    validate_topic_name(topic).ok()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(id) || !digits(partition) {
        return None;
    }
    Some((topic.to_string(), id.parse().ok()?, partition.parse().ok()?))
}

/// The partition directories under `<data dir>/topics`, by name.
pub fn list_partition_dirs(data_dir: &Path) -> Result<Vec<String>, String> {
    let topics = data_dir.join("topics");
    let rd = match std::fs::read_dir(&topics) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", topics.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", topics.display()))?;
        if entry.path().is_dir() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Run once at start, before any shard reads the catalog. A present catalog is left to the
/// shards (which refuse a damaged one). A missing one is fine on an empty data directory; with
/// partition directories on disk it is refused, or, with `rebuild`, rebuilt from them (topic
/// settings, which only the catalog held, become `defaults`) and written.
///
/// Then settles the placement for a broker of `shards` shards whose node id is `node`
/// ([`Catalog::settle_placement`]) and writes the catalog if that changed it, so every shard
/// reads the same placement and finds each partition on a shard that exists.
pub fn check_at_start(
    data_dir: &Path,
    rebuild: bool,
    defaults: &TopicConfig,
    shards: usize,
    node: NodeId,
) -> Result<(), String> {
    let path = data_dir.join(CATALOG_FILE);
    match std::fs::metadata(&path) {
        Ok(_) => {
            if rebuild {
                tracing::warn!(path = %path.display(), "--rebuild-catalog ignored: the catalog exists");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            rebuild_if_needed(data_dir, rebuild, defaults)?
        }
        Err(e) => return Err(format!("cannot read catalog {}: {e}", path.display())),
    }
    if !path.exists() {
        return Ok(());
    }
    let mut catalog = Catalog::load(data_dir)?;
    if catalog.settle_placement(shards, node) {
        catalog
            .store_blocking(data_dir)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A missing catalog: fine on an empty data directory, else refused or rebuilt.
fn rebuild_if_needed(data_dir: &Path, rebuild: bool, defaults: &TopicConfig) -> Result<(), String> {
    let path = data_dir.join(CATALOG_FILE);
    let dirs = list_partition_dirs(data_dir)?;
    if dirs.is_empty() {
        return Ok(());
    }
    if !rebuild {
        return Err(format!(
            "{} is missing but {} holds {} partition director{} ({}{}); refusing to start so \
             that no data is taken for a deleted topic's. Restore the catalog, or start once with \
             --rebuild-catalog to rebuild it from the directories (topic settings become the \
             broker defaults, with retention unlimited)",
            path.display(),
            data_dir.join("topics").display(),
            dirs.len(),
            if dirs.len() == 1 { "y" } else { "ies" },
            dirs.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if dirs.len() > 3 { ", ..." } else { "" },
        ));
    }
    let catalog = Catalog::rebuild_from_dirs(&dirs, defaults)?;
    tracing::warn!(path = %path.display(), topics = catalog.topics.len(),
        "catalog rebuilt from the partition directories; topic settings are the broker \
         defaults, except retention, which is unlimited until set again");
    catalog.store_blocking(data_dir).map_err(|e| e.to_string())
}

impl Catalog {
    /// A catalog of the topics whose partition directories are named in `dirs`, with `defaults`
    /// as their settings except retention, which becomes unlimited: the topic's own retention
    /// was in the lost catalog, and the broker default (7 days) could delete data the topic was
    /// meant to keep. An operator sets it again once the broker is up. A topic name
    /// with directories of several ids (a crash while an older one was deleted) takes the
    /// newest; the older ones stay on disk, unexplained, and are reported. Directories that do
    /// not parse are ignored (and kept).
    pub fn rebuild_from_dirs(dirs: &[String], defaults: &TopicConfig) -> Result<Catalog, String> {
        let mut found: BTreeMap<String, BTreeMap<u64, u32>> = BTreeMap::new();
        for d in dirs {
            match parse_partition_dir(d) {
                Some((topic, id, partition)) => {
                    let count = found.entry(topic).or_default().entry(id).or_insert(0);
                    *count = (*count).max(partition + 1);
                }
                None => tracing::warn!(dir = %d, "not a partition directory; left alone"),
            }
        }
        let mut catalog = Catalog::default();
        for (name, ids) in found {
            let (&id, &partitions) = ids.iter().next_back().expect("one id at least");
            for old in ids.keys().filter(|&&i| i != id) {
                tracing::warn!(topic = %name, id = old,
                    "directories of an older topic of the same name; left alone");
            }
            if partitions > PARTITIONS_MAX {
                return Err(format!(
                    "topic {name} has directories up to partition {partitions}"
                ));
            }
            catalog.next_topic_id = catalog.next_topic_id.max(ids.keys().max().unwrap() + 1);
            catalog.topics.insert(
                name.clone(),
                TopicMeta {
                    name,
                    id,
                    partitions,
                    config: TopicConfig {
                        retention_ms: None,
                        retention_bytes: None,
                        ..defaults.clone()
                    },
                    // Settled at start, like an old catalog's.
                    placement: Vec::new(),
                },
            );
        }
        Ok(catalog)
    }

    /// Applies the restart rule ([`placement::settle`]) to every partition: a recorded shard that
    /// exists is kept; a missing placement is derived with the hash for the shard count the
    /// catalog was settled for (`shards`), else the current count; a partition on a shard this
    /// broker does not have is re-placed with the hash for the current count. Returns whether
    /// anything changed (the caller writes the catalog).
    pub fn settle_placement(&mut self, shards: usize, node: NodeId) -> bool {
        let derive_shards = self.shards.unwrap_or(shards).max(1);
        let mut changed = self.shards != Some(shards);
        for meta in self.topics.values_mut() {
            let mut placed = Vec::with_capacity(meta.partitions as usize);
            for p in 0..meta.partitions {
                let recorded = meta.placement.get(p as usize);
                let (place, why) =
                    placement::settle(recorded, &meta.name, p, derive_shards, shards, node);
                match why {
                    Settled::Kept => {}
                    Settled::Derived => {
                        tracing::debug!(topic = %meta.name, partition = p, shard = %place.shard,
                            "placement derived (catalog without placement)")
                    }
                    Settled::Moved { from } => {
                        tracing::warn!(topic = %meta.name, partition = p, %from, to = %place.shard,
                            "shard of the recorded placement does not exist; partition re-placed")
                    }
                    Settled::Rehomed { from } => {
                        tracing::warn!(topic = %meta.name, partition = p, %from, to = %place.node,
                            "placement names another node; this single-node broker takes it")
                    }
                }
                changed |= why != Settled::Kept;
                placed.push(place);
            }
            changed |= placed.len() != meta.placement.len();
            meta.placement = placed;
        }
        self.shards = Some(shards);
        changed
    }

    /// Forgets the tombstone of deleted topic `id` (its directories are gone).
    pub fn forget_deleted(&mut self, id: u64) -> bool {
        let n = self.deleted.len();
        self.deleted.retain(|d| d.id != id);
        n != self.deleted.len()
    }
}

/// Why a catalog change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid partition count {0}: must be 1 to {PARTITIONS_MAX}")]
    InvalidPartitions(u32),
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("cannot persist the catalog: {0}")]
    Io(String),
}

/// Checks a topic name as Kafka does: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), CatalogError> {
    let bad = |reason: &str| CatalogError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(bad("longer than 249 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("reserved"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(bad(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

impl Catalog {
    /// Loads the catalog from the data dir; an absent file is an empty catalog.
    pub fn load(data_dir: &Path) -> Result<Catalog, String> {
        let path = data_dir.join(CATALOG_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("corrupt catalog {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
            Err(e) => Err(format!("cannot read catalog {}: {e}", path.display())),
        }
    }

    /// Writes the catalog durably on a shard, with glommio I/O (the executor is not blocked): a
    /// crash leaves either the old or the new file. The controller serializes its writes.
    pub async fn store(&self, data_dir: &Path) -> Result<(), CatalogError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| CatalogError::Io(e.to_string()))?;
        crate::disk::checkpoint::replace_file(data_dir, CATALOG_FILE, bytes)
            .await
            .map_err(|e| CatalogError::Io(e.to_string()))
    }

    /// [`Catalog::store`] with blocking `std::fs`, for the main thread before any shard runs.
    pub fn store_blocking(&self, data_dir: &Path) -> Result<(), CatalogError> {
        let io = |e: std::io::Error| CatalogError::Io(e.to_string());
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let tmp = data_dir.join(format!("{CATALOG_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| CatalogError::Io(e.to_string()))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, data_dir.join(CATALOG_FILE)).map_err(io)?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Adds a topic (in memory), placing each partition on this node (`node`) at the shard the
    /// hash proposes for a broker of `shards` shards.
    pub fn create(
        &mut self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        shards: usize,
        node: NodeId,
    ) -> Result<TopicMeta, CatalogError> {
        if partitions > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(partitions));
        }
        let placement = (0..partitions)
            .map(|p| Placement::choose(name, p, shards, node))
            .collect();
        self.create_placed(name, partitions, config, placement)
    }

    /// [`Catalog::create`] with each partition's replica set `replicas` (the leader `node`
    /// among them) recorded in its placement, every replica on the hash's shard.
    pub fn create_replicated(
        &mut self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        shards: usize,
        node: NodeId,
        replicas: &[NodeId],
    ) -> Result<TopicMeta, CatalogError> {
        assert!(
            replicas.contains(&node),
            "the leader {node} is one of the replicas {replicas:?}"
        );
        if partitions > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(partitions));
        }
        let placement = (0..partitions)
            .map(|p| {
                let chosen = Placement::choose(name, p, shards, node);
                Placement {
                    replicas: replicas.to_vec(),
                    replica_shards: vec![chosen.shard; replicas.len()],
                    ..chosen
                }
            })
            .collect();
        self.create_placed(name, partitions, config, placement)
    }

    /// Adds a topic (in memory) whose partitions are placed as `placement` says (one entry per
    /// partition): the cluster metadata's choice, made by the metadata leader.
    pub fn create_placed(
        &mut self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        placement: Vec<Placement>,
    ) -> Result<TopicMeta, CatalogError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(partitions));
        }
        config.log_config().map_err(CatalogError::InvalidConfig)?;
        if placement.len() != partitions as usize {
            return Err(CatalogError::InvalidConfig(format!(
                "{} placements for {partitions} partitions",
                placement.len()
            )));
        }
        if self.topics.contains_key(name) {
            return Err(CatalogError::TopicExists(name.to_string()));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: self.next_topic_id,
            partitions,
            config,
            placement,
        };
        self.next_topic_id += 1;
        self.topics.insert(name.to_string(), meta.clone());
        Ok(meta)
    }

    /// Removes a topic (in memory), leaving a tombstone until its directories are gone.
    pub fn delete(&mut self, name: &str) -> Result<TopicMeta, CatalogError> {
        let meta = self
            .topics
            .remove(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))?;
        self.deleted.push(DeletedTopic {
            name: meta.name.clone(),
            id: meta.id,
            partitions: meta.partitions,
        });
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TopicConfig {
        TopicConfig::from_log_config(&LogConfig::default())
    }

    #[test]
    fn names_follow_kafka_rules() {
        validate_topic_name("orders.v1_EU-2").unwrap();
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn partition_dir_names_parse_and_rebuild_a_catalog() {
        assert_eq!(
            parse_partition_dir("audit-log.v2-12-3"),
            Some(("audit-log.v2".into(), 12, 3))
        );
        for bad in [
            "orders",
            "orders-1",
            "orders-x-1",
            "-1-2",
            "a b-1-2",
            "orders-1-",
        ] {
            assert_eq!(parse_partition_dir(bad), None, "{bad}");
        }
        let dirs: Vec<String> = ["a-0-0", "a-0-2", "b-c-3-0", "b-c-1-0", "junk"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = Catalog::rebuild_from_dirs(&dirs, &cfg()).unwrap();
        assert_eq!(c.topics["a"].partitions, 3, "gaps are partitions too");
        assert_eq!(c.topics["b-c"].id, 3, "the newest id of a name");
        assert_eq!(c.next_topic_id, 4);
        // Retention was in the lost catalog: nothing is deleted on a guess.
        assert!(
            cfg().retention_ms.is_some(),
            "the defaults have a retention"
        );
        for t in c.topics.values() {
            assert_eq!(
                (t.config.retention_ms, t.config.retention_bytes),
                (None, None)
            );
            assert_eq!(t.config.segment_bytes, cfg().segment_bytes);
        }
    }

    #[test]
    fn a_missing_catalog_is_refused_when_partition_directories_exist() {
        let dir = tempfile::tempdir().unwrap();
        check_at_start(dir.path(), false, &cfg(), 1, NodeId(0)).unwrap();
        std::fs::create_dir_all(dir.path().join("topics/orders-4-0")).unwrap();
        let e = check_at_start(dir.path(), false, &cfg(), 1, NodeId(0)).unwrap_err();
        assert!(
            e.contains("--rebuild-catalog") && e.contains("orders-4-0"),
            "{e}"
        );
        assert!(!dir.path().join(CATALOG_FILE).exists());
        check_at_start(dir.path(), true, &cfg(), 2, NodeId(0)).unwrap();
        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(c.topics["orders"].id, 4);
        assert_eq!(c.next_topic_id, 5);
        // The rebuilt catalog is placed for the broker starting on it (2 shards).
        assert_eq!(c.shards, Some(2));
        assert_eq!(
            c.topics["orders"].placement,
            vec![Placement::single(NodeId(0), ShardId(1))]
        );
        // Old catalogs (no `deleted` field) still load.
        std::fs::write(
            dir.path().join(CATALOG_FILE),
            br#"{"topics": {}, "next_topic_id": 9}"#,
        )
        .unwrap();
        assert_eq!(Catalog::load(dir.path()).unwrap().next_topic_id, 9);
    }

    #[test]
    fn create_delete_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::default();
        let t = c.create("orders", 3, cfg(), 2, NodeId(0)).unwrap();
        assert_eq!(t.id, 0);
        assert_eq!(
            c.create("orders", 1, cfg(), 2, NodeId(0)),
            Err(CatalogError::TopicExists("orders".into()))
        );
        assert_eq!(
            c.create("x", 0, cfg(), 2, NodeId(0)),
            Err(CatalogError::InvalidPartitions(0))
        );
        c.store_blocking(dir.path()).unwrap();
        let loaded = Catalog::load(dir.path()).unwrap();
        assert_eq!(loaded, c);
        c.delete("orders").unwrap();
        assert!(matches!(
            c.delete("orders"),
            Err(CatalogError::UnknownTopic(_))
        ));
        assert_eq!(
            c.deleted.len(),
            1,
            "a tombstone until the directories are gone"
        );
        assert!(c.forget_deleted(0));
        // A recreated topic gets a new id, so its directories are new too.
        let t2 = c.create("orders", 1, cfg(), 2, NodeId(0)).unwrap();
        assert_eq!(t2.id, 1);
        assert_ne!(
            t.partition_dir(dir.path(), 0),
            t2.partition_dir(dir.path(), 0)
        );
    }

    fn shards_of(c: &Catalog, topic: &str) -> Vec<u16> {
        c.topics[topic]
            .placement
            .iter()
            .map(|p| p.shard.0)
            .collect()
    }

    #[test]
    fn placement_is_recorded_at_create() {
        let mut c = Catalog::default();
        let t = c.create("orders", 4, cfg(), 4, NodeId(0)).unwrap();
        // The hash's choice for 4 shards (pinned in `ownership`), on this node, one replica.
        assert_eq!(shards_of(&c, "orders"), [3, 1, 2, 2]);
        assert!(t
            .placement
            .iter()
            .all(|p| p.node == NodeId(0) && p.replicas == [NodeId(0)]));
        assert_eq!(t.partitions_on(ShardId(2)).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(t.placement(4), None);
    }

    #[test]
    fn an_old_catalog_without_placement_is_settled_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::default();
        c.create("orders", 4, cfg(), 4, NodeId(0)).unwrap();
        // As written before placement: no `placement`, no `shards`.
        let mut json: serde_json::Value = serde_json::to_value(&c).unwrap();
        json.as_object_mut().unwrap().remove("shards");
        json["topics"]["orders"]
            .as_object_mut()
            .unwrap()
            .remove("placement");
        std::fs::write(
            dir.path().join(CATALOG_FILE),
            serde_json::to_vec(&json).unwrap(),
        )
        .unwrap();
        let old = Catalog::load(dir.path()).unwrap();
        assert!(old.topics["orders"].placement.is_empty());
        // The shard count is not known: the current one (2) derives it, and it is written.
        check_at_start(dir.path(), false, &cfg(), 2, NodeId(0)).unwrap();
        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(
            (shards_of(&c, "orders"), c.shards),
            (vec![1, 1, 0, 0], Some(2))
        );
    }

    #[test]
    fn a_restart_with_other_shard_counts_keeps_what_exists_and_moves_the_rest() {
        let mut c = Catalog {
            shards: Some(4),
            ..Catalog::default()
        };
        c.create("orders", 4, cfg(), 4, NodeId(0)).unwrap();
        assert!(!c.settle_placement(4, NodeId(0)), "nothing to change");
        // 3 shards: only partition 0 (on shard 3) moves, to the hash's shard for 3.
        assert!(c.settle_placement(3, NodeId(0)));
        assert_eq!(shards_of(&c, "orders"), [2, 1, 2, 2]);
        // 1 shard: everything on shard 0.
        assert!(c.settle_placement(1, NodeId(0)));
        assert_eq!(shards_of(&c, "orders"), [0, 0, 0, 0]);
        // Back to 4: the recorded shard 0 exists, so nothing moves back.
        assert!(c.settle_placement(4, NodeId(0)));
        assert_eq!(shards_of(&c, "orders"), [0, 0, 0, 0]);
        assert_eq!(c.shards, Some(4));
    }
}
