//! The topic catalog: names, partition counts and per-topic log settings, persisted in
//! `<data dir>/catalog.json`.
//!
//! Shard 0 (the controller) is the only writer: it applies a change, writes the file atomically
//! (temporary file, fsync, rename, fsync of the directory) and then tells every shard. Every
//! shard holds its own copy, read-only, to answer metadata requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::{Durability, LogConfig};

/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;
const CATALOG_FILE: &str = "catalog.json";

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
}

impl TopicMeta {
    /// Directory of one partition's log.
    pub fn partition_dir(&self, data_dir: &Path, partition: u32) -> PathBuf {
        data_dir
            .join("topics")
            .join(format!("{}-{}-{}", self.name, self.id, partition))
    }
}

/// All topics of the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub topics: BTreeMap<String, TopicMeta>,
    /// The id the next created topic gets.
    pub next_topic_id: u64,
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

    /// Writes the catalog durably: a crash leaves either the old or the new file.
    pub fn store(&self, data_dir: &Path) -> Result<(), CatalogError> {
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

    /// Adds a topic (in memory).
    pub fn create(
        &mut self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicMeta, CatalogError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(CatalogError::InvalidPartitions(partitions));
        }
        config.log_config().map_err(CatalogError::InvalidConfig)?;
        if self.topics.contains_key(name) {
            return Err(CatalogError::TopicExists(name.to_string()));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: self.next_topic_id,
            partitions,
            config,
        };
        self.next_topic_id += 1;
        self.topics.insert(name.to_string(), meta.clone());
        Ok(meta)
    }

    /// Removes a topic (in memory).
    pub fn delete(&mut self, name: &str) -> Result<TopicMeta, CatalogError> {
        self.topics
            .remove(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))
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
    fn create_delete_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::default();
        let t = c.create("orders", 3, cfg()).unwrap();
        assert_eq!(t.id, 0);
        assert_eq!(
            c.create("orders", 1, cfg()),
            Err(CatalogError::TopicExists("orders".into()))
        );
        assert_eq!(
            c.create("x", 0, cfg()),
            Err(CatalogError::InvalidPartitions(0))
        );
        c.store(dir.path()).unwrap();
        let loaded = Catalog::load(dir.path()).unwrap();
        assert_eq!(loaded, c);
        c.delete("orders").unwrap();
        assert!(matches!(
            c.delete("orders"),
            Err(CatalogError::UnknownTopic(_))
        ));
        // A recreated topic gets a new id, so its directories are new too.
        let t2 = c.create("orders", 1, cfg()).unwrap();
        assert_eq!(t2.id, 1);
        assert_ne!(
            t.partition_dir(dir.path(), 0),
            t2.partition_dir(dir.path(), 0)
        );
    }
}
