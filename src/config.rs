//! Broker configuration: flags, an optional TOML file, and the defaults. Every limit names its
//! unit last. Precedence: a flag given on the command line beats the file, which beats the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::{Durability, LogConfig};

/// Most shards one broker runs.
pub const SHARDS_MAX: usize = 1024;

/// `shards` from a file: 0 is not "one per CPU" there (that is leaving it out), it is a mistake.
fn deserialize_shards<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 || n > SHARDS_MAX {
        return Err(serde::de::Error::custom(format!(
            "shards must be 1 to {SHARDS_MAX} (leave it out for one shard per CPU), got {n}"
        )));
    }
    Ok(n)
}

/// Limits the broker enforces on clients; sent to them in `ApiVersions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request or response frame, size prefix excluded.
    pub frame_bytes_max: u32,
    /// Requests read from one connection but not yet answered; past it the broker stops reading
    /// that connection (backpressure).
    pub inflight_requests_max: u32,
    /// Longest a fetch may wait for data (`max_wait_ms` is capped to it).
    pub fetch_wait_ms_max: u32,
    /// Most bytes one fetch response carries.
    pub fetch_bytes_max: u32,
    /// Open client connections per shard; more are refused.
    pub connections_per_shard_max: u32,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_wait_ms: u64,
    /// Memory one shard lets its connections hold for requests being read and served and for
    /// responses waiting to be written (Kafka's `queued.max.request.bytes`, per shard). When it
    /// is spent, connections that want more wait (the shard stops reading from them).
    pub request_memory_bytes_max: u64,
    /// The same, for one connection: a peer that sends faster than it is served, or does not
    /// read its responses, stops being read past it. At least `frame_bytes_max` +
    /// `fetch_bytes_max` + 128 KiB, so one request and one response of the largest size fit.
    pub connection_memory_bytes_max: u64,
    /// A connection with nothing in flight and nothing received for this long is closed (Kafka's
    /// `connections.max.idle.ms`). A long poll in flight is not idleness.
    pub connection_idle_ms_max: u64,
    /// A request frame must arrive whole within this long of its first byte, or the connection
    /// is closed (a stalled or trickling sender holds memory and a connection slot).
    pub request_read_ms_max: u64,
    /// A response must be taken by the peer within this long once it is ready to be written, or
    /// the connection is closed (a peer that does not read holds the memory of its responses).
    pub response_write_ms_max: u64,
    /// Under memory pressure (a connection waits for the shard's `request_memory_bytes_max`), a
    /// connection that holds memory and has made no progress for this long (its peer has left a
    /// response unread, or stopped sending in the middle of a frame) is closed to free it, the
    /// one holding the most first, so stalled peers cannot keep everyone else waiting.
    pub pressure_stall_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: 16 << 20,
            inflight_requests_max: 512,
            fetch_wait_ms_max: 30_000,
            fetch_bytes_max: 50 << 20,
            connections_per_shard_max: 10_000,
            shutdown_wait_ms: 10_000,
            request_memory_bytes_max: 512 << 20,
            connection_memory_bytes_max: 96 << 20,
            connection_idle_ms_max: 600_000,
            request_read_ms_max: 30_000,
            response_write_ms_max: 60_000,
            pressure_stall_ms: 1_000,
        }
    }
}

/// Defaults for new topics (each topic may override them at creation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicDefaults {
    pub partitions: u32,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// `-1` keeps data forever.
    pub retention_ms: i64,
    /// `-1` means no size limit.
    pub retention_bytes: i64,
    /// `sync` or `interval`.
    pub durability: String,
    pub flush_ms: u64,
    pub index_interval_bytes: u64,
    pub batch_bytes_max: u32,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        let log = LogConfig::default();
        TopicDefaults {
            partitions: 1,
            segment_bytes: log.segment_bytes,
            segment_ms: log.segment_ms,
            retention_ms: log.retention_ms.unwrap_or(-1),
            retention_bytes: log.retention_bytes.map(|b| b as i64).unwrap_or(-1),
            durability: "sync".into(),
            flush_ms: log.flush_ms,
            index_interval_bytes: log.index_interval_bytes,
            batch_bytes_max: log.batch_bytes_max as u32,
        }
    }
}

/// One node of a cluster as `--peers` names it: `ID@HOST:PORT`, its replication address (QUIC
/// over UDP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: u32,
    pub addr: SocketAddr,
}

impl std::str::FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Peer, String> {
        let (id, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("peer {s:?}: expected ID@HOST:PORT, e.g. 1@127.0.0.1:9192"))?;
        let node: u32 = id
            .parse()
            .map_err(|_| format!("peer {s:?}: node id {id:?} is not a number"))?;
        if node == 0 {
            return Err(format!("peer {s:?}: node ids start at 1"));
        }
        let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .map_err(|e| format!("peer {s:?}: cannot resolve {addr:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("peer {s:?}: {addr:?} resolves to no address"))?;
        Ok(Peer { node, addr })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.node, self.addr)
    }
}

impl Serialize for Peer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Peer, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How replication runs (`[replication]` in the TOML file). Only read when `peers` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSettings {
    /// The CPU the replication thread (quinn on a tokio `current_thread` runtime) is pinned to;
    /// unpinned when left out.
    pub cpu: Option<usize>,
    /// One Raft tick. Elections start after `election_ticks` to twice that without a leader's
    /// word; the leader sends heartbeats every `heartbeat_ticks`.
    pub tick_ms: u64,
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Messages queued between the shards and the replication thread, per direction and shard;
    /// a full queue is backpressure.
    pub channel_messages_max: usize,
    /// Most bytes of entries in one Raft append message.
    pub append_bytes_max: u64,
    /// Append messages in flight to one follower of one group.
    pub inflight_appends_max: usize,
    /// A replica that has not caught up with its leader's log end for this long leaves the
    /// in-sync set (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_ms_max: u64,
    /// Replicas of each partition of a topic created without a replication factor (Kafka's
    /// `default.replication.factor`, Redpanda's `default_topic_replications`).
    pub default_replication_factor: u16,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            cpu: None,
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            channel_messages_max: 4096,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 256,
            replica_lag_ms_max: 10_000,
            default_replication_factor: 1,
        }
    }
}

/// Everything `quill serve` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    /// The common client port; every shard accepts on it (SO_REUSEPORT). Port 0 picks a free one.
    pub listen: SocketAddr,
    /// Shard `i` also listens on `shard_port_base + i`; 0 picks free ports.
    pub shard_port_base: u16,
    /// Number of shards (one pinned executor each), 1 to [`SHARDS_MAX`]; left out (0 inside)
    /// means one per available CPU. An explicit 0 is refused.
    #[serde(deserialize_with = "deserialize_shards")]
    pub shards: usize,
    /// CPUs to pin shards to, in shard order; empty means the first `shards` available CPUs.
    pub cpus: Vec<usize>,
    /// This broker's node id; in a cluster, its entry in `peers` (ids start at 1).
    pub node_id: u32,
    /// Every node of the cluster, this one included: `["1@10.0.0.1:9192", ...]`, the replication
    /// addresses (QUIC over UDP; `listen` stays the client address). Empty: a single node,
    /// without replication.
    pub peers: Vec<Peer>,
    /// Directory of the cluster's certificates (`quill cluster init-certs`): `ca.pem`, and
    /// `node-<id>.pem` with `node-<id>-key.pem` for this node. Required with `peers`.
    pub tls_dir: Option<PathBuf>,
    pub replication: ReplicationSettings,
    /// Host name clients are told to connect to; defaults to the listen address's IP.
    pub advertised_host: Option<String>,
    /// Memory glommio registers for I/O per ring, per shard (3 rings each); keep
    /// `3 * io_memory_bytes * shards` under `ulimit -l`.
    pub io_memory_bytes: usize,
    /// Recent batches kept in memory per shard for tail readers.
    pub batch_cache_bytes_max: usize,
    /// How often each shard applies retention to its partitions.
    pub retention_check_ms: u64,
    pub limits: Limits,
    pub topic_defaults: TopicDefaults,
    /// Rebuild a missing `catalog.json` from the partition directories at start (the
    /// `--rebuild-catalog` flag; never read from a file).
    #[serde(skip)]
    pub rebuild_catalog: bool,
    /// Sealed-segment files each shard keeps open for reads (an LRU; the active segment and its
    /// two index files of every partition stay open besides). Lower it if descriptors are short.
    pub open_segment_files_max: usize,
    /// Disk space each partition's active segment reserves ahead of its writes, in steps of this
    /// many bytes (`fallocate`), so writes do not extend the file. Costs up to this much disk per
    /// partition that has been written to since it was opened; `0` turns it off.
    pub preallocate_bytes: u64,
    /// How often each partition checkpoints its recovery point while appends make it move.
    pub recovery_point_interval_ms: u64,
    /// Free space on the data directory's file system that preallocation leaves alone.
    pub disk_reserve_bytes: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./quill-data"),
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            shard_port_base: 0,
            shards: 0,
            cpus: Vec::new(),
            node_id: 0,
            peers: Vec::new(),
            tls_dir: None,
            replication: ReplicationSettings::default(),
            advertised_host: None,
            io_memory_bytes: 1 << 20,
            batch_cache_bytes_max: 256 << 20,
            retention_check_ms: 10_000,
            limits: Limits::default(),
            topic_defaults: TopicDefaults::default(),
            rebuild_catalog: false,
            open_segment_files_max: 256,
            preallocate_bytes: LogConfig::default().preallocate_bytes,
            recovery_point_interval_ms: LogConfig::default().recovery_point_interval_ms,
            disk_reserve_bytes: LogConfig::default().disk_reserve_bytes,
        }
    }
}

impl BrokerConfig {
    /// Reads a TOML file; unknown keys are errors so typos do not pass silently.
    pub fn from_toml_file(path: &Path) -> Result<BrokerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
    }

    /// The log settings of a topic created with the broker defaults.
    pub fn default_log_config(&self) -> Result<LogConfig, String> {
        let d = &self.topic_defaults;
        let durability: Durability = d.durability.parse()?;
        let cfg = LogConfig {
            segment_bytes: d.segment_bytes,
            segment_ms: d.segment_ms,
            index_interval_bytes: d.index_interval_bytes,
            batch_bytes_max: d.batch_bytes_max as usize,
            retention_ms: (d.retention_ms >= 0).then_some(d.retention_ms),
            retention_bytes: (d.retention_bytes >= 0).then_some(d.retention_bytes as u64),
            durability,
            flush_ms: d.flush_ms,
            ..LogConfig::default()
        };
        cfg.validate()
            .map_err(|e| format!("invalid topic_defaults: {e}"))?;
        Ok(cfg)
    }

    /// A topic's log settings with the broker-wide storage settings applied (these are not
    /// per-topic: they size the broker's use of disk space and sync work).
    pub fn log_config_for(&self, mut cfg: LogConfig) -> Result<LogConfig, String> {
        cfg.preallocate_bytes = self.preallocate_bytes;
        cfg.recovery_point_interval_ms = self.recovery_point_interval_ms;
        cfg.disk_reserve_bytes = self.disk_reserve_bytes;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the settings that do not depend on the machine.
    pub fn validate(&self) -> Result<(), String> {
        self.default_log_config()?;
        let l = &self.limits;
        if (l.frame_bytes_max as u64) < self.topic_defaults.batch_bytes_max as u64 + 1024 {
            return Err(format!(
                "limits.frame_bytes_max ({}) must exceed topic_defaults.batch_bytes_max ({}) by at least 1024",
                l.frame_bytes_max, self.topic_defaults.batch_bytes_max
            ));
        }
        if l.inflight_requests_max == 0 {
            return Err("limits.inflight_requests_max must be at least 1".into());
        }
        let conn_min = u64::from(l.frame_bytes_max) + u64::from(l.fetch_bytes_max) + (128 << 10);
        if l.connection_memory_bytes_max < conn_min {
            return Err(format!(
                "limits.connection_memory_bytes_max ({}) must be at least frame_bytes_max + \
                 fetch_bytes_max + 128 KiB ({conn_min})",
                l.connection_memory_bytes_max
            ));
        }
        if l.request_memory_bytes_max < l.connection_memory_bytes_max {
            return Err(format!(
                "limits.request_memory_bytes_max ({}) must be at least \
                 limits.connection_memory_bytes_max ({})",
                l.request_memory_bytes_max, l.connection_memory_bytes_max
            ));
        }
        for (name, ms) in [
            ("connection_idle_ms_max", l.connection_idle_ms_max),
            ("request_read_ms_max", l.request_read_ms_max),
            ("response_write_ms_max", l.response_write_ms_max),
            ("pressure_stall_ms", l.pressure_stall_ms),
        ] {
            if ms == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        if self.topic_defaults.partitions == 0 {
            return Err("topic_defaults.partitions must be at least 1".into());
        }
        self.validate_cluster()?;
        self.validate_counts()
    }

    /// Whether this broker is one node of a replicated cluster (`peers` given).
    pub fn is_cluster(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The cluster settings that cannot work: this node missing from `peers`, an id or address
    /// given twice, no certificates, Raft timings that cannot elect a leader.
    fn validate_cluster(&self) -> Result<(), String> {
        if !self.is_cluster() {
            return Ok(());
        }
        if !self.peers.iter().any(|p| p.node == self.node_id) {
            let ids: Vec<String> = self.peers.iter().map(|p| p.node.to_string()).collect();
            return Err(format!(
                "node_id {} is not one of the peers (ids {}): a node binds its own entry",
                self.node_id,
                ids.join(",")
            ));
        }
        for (i, p) in self.peers.iter().enumerate() {
            for q in &self.peers[i + 1..] {
                if p.node == q.node {
                    return Err(format!("peers: node id {} is given twice", p.node));
                }
                if p.addr == q.addr {
                    return Err(format!(
                        "peers: nodes {} and {} both have address {}",
                        p.node, q.node, p.addr
                    ));
                }
            }
        }
        if self.tls_dir.is_none() {
            return Err(
                "peers needs tls_dir (--tls-dir): nodes talk only over mutual TLS; \
                 make the certificates with `quill cluster init-certs DIR`"
                    .into(),
            );
        }
        let r = &self.replication;
        if r.tick_ms == 0 || r.heartbeat_ticks == 0 || r.channel_messages_max == 0 {
            return Err(
                "replication.tick_ms, heartbeat_ticks and channel_messages_max must be at least 1"
                    .into(),
            );
        }
        if r.election_ticks <= r.heartbeat_ticks {
            return Err(format!(
                "replication.election_ticks ({}) must exceed heartbeat_ticks ({})",
                r.election_ticks, r.heartbeat_ticks
            ));
        }
        if r.append_bytes_max == 0 || r.inflight_appends_max == 0 {
            return Err(
                "replication.append_bytes_max and inflight_appends_max must be at least 1".into(),
            );
        }
        if r.default_replication_factor == 0
            || usize::from(r.default_replication_factor) > self.peers.len()
        {
            return Err(format!(
                "replication.default_replication_factor ({}) must be 1 to the {} peers",
                r.default_replication_factor,
                self.peers.len()
            ));
        }
        Ok(())
    }

    /// Counts and sizes no broker can run with (issue 9): each is refused with its name.
    fn validate_counts(&self) -> Result<(), String> {
        if self.shards > SHARDS_MAX {
            return Err(format!(
                "shards must be 1 to {SHARDS_MAX}, got {}",
                self.shards
            ));
        }
        if self.limits.fetch_bytes_max == 0 {
            return Err("limits.fetch_bytes_max must be at least 1".into());
        }
        if self.limits.connections_per_shard_max == 0 {
            return Err("limits.connections_per_shard_max must be at least 1".into());
        }
        if self.open_segment_files_max == 0 {
            return Err("open_segment_files_max must be at least 1".into());
        }
        // preallocate_bytes and recovery_point_interval_ms are checked with the log settings.
        self.log_config_for(self.default_log_config()?)?;
        self.check_shard_ports(self.shards.max(self.cpus.len()).max(1))
    }

    /// Shard `i` listens on `shard_port_base + i`: every one must be a port.
    pub fn check_shard_ports(&self, shards: usize) -> Result<(), String> {
        let base = usize::from(self.shard_port_base);
        if base != 0 && base + shards - 1 > usize::from(u16::MAX) {
            return Err(format!(
                "shard_port_base {base} leaves no port for shard {} of {shards}: ports end at {}",
                usize::from(u16::MAX) + 1 - base,
                u16::MAX
            ));
        }
        Ok(())
    }

    pub fn advertised_host(&self) -> String {
        self.advertised_host
            .clone()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_overrides_them() {
        BrokerConfig::default().validate().unwrap();
        let c: BrokerConfig = toml::from_str(
            r#"
            data_dir = "/var/lib/quill"
            shards = 2
            [limits]
            frame_bytes_max = 33554432
            [topic_defaults]
            durability = "interval"
            flush_ms = 50
            "#,
        )
        .unwrap();
        assert_eq!(c.shards, 2);
        assert_eq!(c.limits.frame_bytes_max, 32 << 20);
        assert_eq!(c.limits.inflight_requests_max, 512);
        assert_eq!(
            c.default_log_config().unwrap().durability,
            Durability::Interval
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(toml::from_str::<BrokerConfig>("shardz = 2").is_err());
        let e = toml::from_str::<BrokerConfig>("shards = 0").unwrap_err();
        assert!(e.to_string().contains("shards must be 1 to 1024"), "{e}");
        let ports = BrokerConfig {
            shard_port_base: 65_000,
            shards: 600,
            ..BrokerConfig::default()
        };
        assert!(ports.validate().unwrap_err().contains("shard_port_base"));
        for (c, what) in [
            (
                BrokerConfig {
                    open_segment_files_max: 0,
                    ..BrokerConfig::default()
                },
                "open_segment_files_max",
            ),
            (
                BrokerConfig {
                    recovery_point_interval_ms: 0,
                    ..BrokerConfig::default()
                },
                "recovery_point_interval_ms",
            ),
            (
                BrokerConfig {
                    preallocate_bytes: 1000,
                    ..BrokerConfig::default()
                },
                "preallocate_bytes",
            ),
        ] {
            assert!(c.validate().unwrap_err().contains(what), "{what}");
        }
        assert!(ports.check_shard_ports(536).is_ok());
        let c = BrokerConfig {
            topic_defaults: TopicDefaults {
                durability: "sometimes".into(),
                ..TopicDefaults::default()
            },
            ..BrokerConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("durability"));
    }

    #[test]
    fn cluster_settings_are_checked() {
        let c: BrokerConfig = toml::from_str(
            r#"
            node_id = 2
            peers = ["1@127.0.0.1:9192", "2@127.0.0.1:9193", "3@127.0.0.1:9194"]
            tls_dir = "/etc/quill/certs"
            [replication]
            tick_ms = 20
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.is_cluster());
        assert_eq!(c.peers[1].to_string(), "2@127.0.0.1:9193");
        assert_eq!(c.replication.election_ticks, 10);
        let bad = |f: &dyn Fn(&mut BrokerConfig)| {
            let mut b = c.clone();
            f(&mut b);
            b.validate().unwrap_err()
        };
        assert!(bad(&|b| b.node_id = 4).contains("not one of the peers"));
        assert!(bad(&|b| b.tls_dir = None).contains("tls_dir"));
        assert!(bad(&|b| b.peers[2].node = 1).contains("given twice"));
        assert!(bad(&|b| b.peers[2].addr = b.peers[0].addr).contains("both have address"));
        assert!(bad(&|b| b.replication.election_ticks = 2).contains("election_ticks"));
        for text in [
            "127.0.0.1:9192",
            "x@127.0.0.1:1",
            "0@127.0.0.1:1",
            "1@nowhere",
        ] {
            assert!(text.parse::<Peer>().is_err(), "{text}");
        }
        assert!(toml::from_str::<BrokerConfig>("peers = [\"1@\"]").is_err());
    }
}
