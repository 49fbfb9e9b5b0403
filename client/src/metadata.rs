//! The client's cached view of the cluster, without I/O: brokers and their shard ports, and
//! for each topic its partitions' leaders.
//!
//! Filled from Metadata responses ([`Metadata::update`]) and asked where a partition's requests
//! go ([`Metadata::route`]): to the leader broker's port of the shard that owns the partition
//! (`brokers[].shard_ports[leader_shard]`), or its common port when the broker did not list
//! that shard, so each request lands on the owning core with no hop between cores
//! (`docs/PROTOCOL.md`, "Shard-aware clients"). The leader may be on any broker of the list:
//! routing connects to whichever `leader_node` names. It also remembers the metadata leader
//! (`controller_node`, where topic admin goes), takes in the leader hints of `NOT_LEADER`
//! answers ([`Metadata::apply_leader_hint`]), and rate-limits refreshes per topic
//! ([`Metadata::refresh_due`]), so a partition without a leader costs one Metadata request per
//! `metadata_refresh_backoff_ms`, not one per retry. Times are passed in, so the cache is a plain
//! value that tests drive directly.

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{LeaderHint, MetadataResponse, PartitionMetadata};

/// One broker's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BrokerAddrs {
    pub(crate) host: String,
    /// `host` resolved; `None` if it could not be.
    pub(crate) ip: Option<IpAddr>,
    pub(crate) port: u16,
    /// Port of each shard, indexed by shard id; 0 where the broker did not list the shard.
    pub(crate) shard_ports: Vec<u16>,
}

/// What the cache knows about one topic.
#[derive(Clone, Debug)]
pub(crate) struct TopicInfo {
    pub(crate) name: Arc<str>,
    /// In partition order, as the broker listed them.
    pub(crate) partitions: Vec<PartitionMetadata>,
    pub(crate) updated_at: Instant,
}

impl TopicInfo {
    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Whether this was loaded less than `max_age` before `now`.
    pub(crate) fn is_fresh(&self, now: Instant, max_age: Duration) -> bool {
        now.saturating_duration_since(self.updated_at) < max_age
    }
}

/// Where a partition's requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Send them here.
    To(SocketAddr),
    /// The cache cannot tell (topic not loaded, leader unknown or unresolvable): refresh.
    Unknown,
    /// The last refresh said the topic does not exist.
    NoTopic,
    /// The topic exists but has fewer partitions.
    NoPartition { partitions: u32 },
}

/// The cluster as the last Metadata responses described it. One per client, on its executor.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metadata {
    brokers: HashMap<u32, BrokerAddrs>,
    topics: HashMap<Arc<str>, TopicInfo>,
    /// Topics a refresh reported as unknown, until a later refresh finds them.
    missing: HashSet<Arc<str>>,
    /// The metadata leader (Metadata v2 `controller_node`), if known.
    controller: Option<u32>,
    /// When a refresh of each topic was last started (rate limit).
    refreshed_at: HashMap<Arc<str>, Instant>,
}

impl Metadata {
    /// Takes in a Metadata response received at `now`. Brokers are replaced by the response's
    /// list when it has one; each described topic is replaced, or marked missing when the
    /// broker says it does not exist. `resolve` turns a broker's host into an address.
    /// Returns the topics the response described with an error, with that error.
    pub(crate) fn update(
        &mut self,
        response: &MetadataResponse,
        now: Instant,
        mut resolve: impl FnMut(&str) -> Option<IpAddr>,
    ) -> Vec<(String, ErrorCode)> {
        if let Ok(node) = u32::try_from(response.controller_node) {
            self.controller = Some(node);
        }
        if !response.brokers.is_empty() {
            self.brokers.clear();
            for b in &response.brokers {
                let mut shard_ports = Vec::new();
                for s in &b.shard_ports {
                    let at = usize::from(s.shard_id);
                    if shard_ports.len() <= at {
                        shard_ports.resize(at + 1, 0);
                    }
                    shard_ports[at] = s.port;
                }
                self.brokers.insert(
                    b.node_id,
                    BrokerAddrs {
                        host: b.host.clone(),
                        ip: resolve(&b.host),
                        port: b.port,
                        shard_ports,
                    },
                );
            }
        }
        let mut errors = Vec::new();
        for t in &response.topics {
            let name: Arc<str> = Arc::from(t.name.as_str());
            match t.error_code {
                ErrorCode::None => {
                    self.missing.remove(&name);
                    self.topics.insert(
                        name.clone(),
                        TopicInfo {
                            name,
                            partitions: t.partitions.clone(),
                            updated_at: now,
                        },
                    );
                }
                ErrorCode::UnknownTopicOrPartition => {
                    self.topics.remove(&name);
                    self.missing.insert(name);
                    errors.push((t.name.clone(), t.error_code));
                }
                code => errors.push((t.name.clone(), code)),
            }
        }
        errors
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// Whether the last refresh said `name` does not exist.
    #[cfg(test)]
    pub(crate) fn is_missing(&self, name: &str) -> bool {
        self.missing.contains(name)
    }

    /// Drops what is known about `name` (deleted, or its leaders moved).
    pub(crate) fn forget(&mut self, name: &str) {
        self.topics.remove(name);
        self.missing.remove(name);
    }

    /// The metadata leader's node id, if a Metadata v2 answer named it.
    pub(crate) fn controller(&self) -> Option<u32> {
        self.controller
    }

    /// Forgets the metadata leader (it answered `NOT_CONTROLLER`).
    pub(crate) fn forget_controller(&mut self) {
        self.controller = None;
    }

    /// Whether a refresh of `topic` may start at `now`: none started within `backoff` before.
    /// Records `now` as the latest start when it says yes.
    pub(crate) fn refresh_due(
        &mut self,
        topic: &Arc<str>,
        now: Instant,
        backoff: Duration,
    ) -> bool {
        match self.refreshed_at.get(topic) {
            Some(&at) if now.saturating_duration_since(at) < backoff => false,
            _ => {
                self.refreshed_at.insert(topic.clone(), now);
                true
            }
        }
    }

    /// Takes in the leader hint of a `NOT_LEADER` answer for `topic`-`partition`: the partition
    /// moves to the hinted leader when the hint names a broker this cache knows and an epoch
    /// newer than the cached one (an older or equal epoch says nothing new). Returns whether the
    /// route changed.
    pub(crate) fn apply_leader_hint(
        &mut self,
        topic: &str,
        partition: u32,
        hint: LeaderHint,
    ) -> bool {
        let Some((node, shard)) = hint.leader() else {
            return false;
        };
        if !self.brokers.contains_key(&node) {
            return false;
        }
        let Some(p) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
        else {
            return false;
        };
        if hint.leader_epoch <= p.leader_epoch {
            return false;
        }
        p.leader_node = node;
        p.leader_shard = shard;
        p.leader_epoch = hint.leader_epoch;
        p.error_code = ErrorCode::None;
        true
    }

    /// The common address of every broker the last answer named, by node id.
    pub(crate) fn broker_addrs(&self) -> Vec<SocketAddr> {
        let mut nodes: Vec<&u32> = self.brokers.keys().collect();
        nodes.sort();
        nodes
            .into_iter()
            .filter_map(|&n| self.broker_addr(n, None))
            .collect()
    }

    /// The address of `node`'s port for `shard`, or its common port.
    pub(crate) fn broker_addr(&self, node: u32, shard: Option<u16>) -> Option<SocketAddr> {
        let b = self.brokers.get(&node)?;
        let port = shard
            .and_then(|s| b.shard_ports.get(usize::from(s)).copied())
            .filter(|&p| p != 0)
            .unwrap_or(b.port);
        Some(SocketAddr::new(b.ip?, port))
    }

    /// Where requests for `topic`-`partition` go.
    pub(crate) fn route(&self, topic: &str, partition: u32) -> Route {
        let Some(t) = self.topics.get(topic) else {
            return if self.missing.contains(topic) {
                Route::NoTopic
            } else {
                Route::Unknown
            };
        };
        let Some(p) = t.partitions.get(partition as usize) else {
            return Route::NoPartition {
                partitions: t.partition_count(),
            };
        };
        // An election under way: no leader to send to until a refresh finds one.
        if p.error_code == ErrorCode::LeaderNotAvailable {
            return Route::Unknown;
        }
        match self.broker_addr(p.leader_node, Some(p.leader_shard)) {
            Some(addr) => Route::To(addr),
            None => Route::Unknown,
        }
    }
}

/// Resolves `host` to an IP address: literal addresses directly, names through the system
/// resolver (blocking, so done only on metadata refreshes).
pub(crate) fn resolve_host(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    use std::net::ToSocketAddrs;
    (host, 0u16)
        .to_socket_addrs()
        .ok()?
        .next()
        .map(|a: SocketAddr| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quill_proto::protocol::{BrokerMetadata, ShardPort, TopicMetadata};

    fn partition(p: u32, shard: u16) -> PartitionMetadata {
        PartitionMetadata {
            partition: p,
            error_code: ErrorCode::None,
            leader_node: 1,
            leader_shard: shard,
            leader_epoch: 0,
            log_start_offset: 0,
            high_watermark: 0,
            log_end_offset: 0,
            replicas: vec![1],
            in_sync: vec![1],
        }
    }

    fn response(topics: Vec<TopicMetadata>) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![
                BrokerMetadata {
                    node_id: 1,
                    host: "127.0.0.1".into(),
                    port: 9092,
                    shard_ports: vec![
                        ShardPort {
                            shard_id: 0,
                            port: 9100,
                        },
                        ShardPort {
                            shard_id: 1,
                            port: 9101,
                        },
                    ],
                },
                BrokerMetadata {
                    node_id: 2,
                    host: "127.0.0.2".into(),
                    port: 9192,
                    shard_ports: vec![ShardPort {
                        shard_id: 0,
                        port: 9200,
                    }],
                },
            ],
            topics,
            damaged_ranges: None,
            controller_node: 2,
        }
    }

    fn topic_t(partitions: Vec<PartitionMetadata>) -> TopicMetadata {
        TopicMetadata {
            error_code: ErrorCode::None,
            name: "t".into(),
            partitions,
        }
    }

    #[test]
    fn a_leader_on_another_broker_routes_to_that_broker() {
        let mut m = Metadata::default();
        let on_2 = PartitionMetadata {
            leader_node: 2,
            leader_shard: 0,
            ..partition(1, 0)
        };
        m.update(
            &response(vec![topic_t(vec![partition(0, 1), on_2])]),
            Instant::now(),
            resolve_host,
        );
        assert_eq!(
            m.route("t", 0),
            Route::To(SocketAddr::from(([127, 0, 0, 1], 9101)))
        );
        assert_eq!(
            m.route("t", 1),
            Route::To(SocketAddr::from(([127, 0, 0, 2], 9200)))
        );
        assert_eq!(m.controller(), Some(2));
        m.forget_controller();
        assert_eq!(m.controller(), None);
    }

    #[test]
    fn a_partition_without_a_leader_has_no_route_until_refreshed() {
        let mut m = Metadata::default();
        let electing = PartitionMetadata {
            error_code: ErrorCode::LeaderNotAvailable,
            ..partition(0, 0)
        };
        let now = Instant::now();
        m.update(&response(vec![topic_t(vec![electing])]), now, resolve_host);
        assert_eq!(m.route("t", 0), Route::Unknown);
        m.update(
            &response(vec![topic_t(vec![partition(0, 1)])]),
            now,
            resolve_host,
        );
        assert_eq!(
            m.route("t", 0),
            Route::To(SocketAddr::from(([127, 0, 0, 1], 9101)))
        );
    }

    #[test]
    fn leader_hints_move_a_partition_only_forward() {
        let mut m = Metadata::default();
        m.update(
            &response(vec![topic_t(vec![partition(0, 1)])]),
            Instant::now(),
            resolve_host,
        );
        let hint = |node, shard, epoch| LeaderHint {
            leader_node: node,
            leader_shard: shard,
            leader_epoch: epoch,
        };
        // Same epoch as cached (0): nothing new.
        assert!(!m.apply_leader_hint("t", 0, hint(2, 0, 0)));
        // Unknown leader, unknown broker, unknown partition: nothing to do.
        assert!(!m.apply_leader_hint("t", 0, LeaderHint::UNKNOWN));
        assert!(!m.apply_leader_hint("t", 0, hint(7, 0, 5)));
        assert!(!m.apply_leader_hint("t", 3, hint(2, 0, 5)));
        assert!(!m.apply_leader_hint("u", 0, hint(2, 0, 5)));
        // A newer epoch on a known broker: routed there at once.
        assert!(m.apply_leader_hint("t", 0, hint(2, 0, 1)));
        assert_eq!(
            m.route("t", 0),
            Route::To(SocketAddr::from(([127, 0, 0, 2], 9200)))
        );
        assert!(!m.apply_leader_hint("t", 0, hint(1, 1, 1)));
    }

    #[test]
    fn refreshes_are_rate_limited_per_topic() {
        let mut m = Metadata::default();
        let backoff = Duration::from_millis(100);
        let t0 = Instant::now();
        let t: Arc<str> = Arc::from("t");
        let u: Arc<str> = Arc::from("u");
        assert!(m.refresh_due(&t, t0, backoff));
        assert!(!m.refresh_due(&t, t0 + Duration::from_millis(99), backoff));
        assert!(m.refresh_due(&u, t0 + Duration::from_millis(1), backoff));
        assert!(m.refresh_due(&t, t0 + backoff, backoff));
        assert!(!m.refresh_due(&t, t0 + backoff, backoff));
    }

    #[test]
    fn partitions_route_to_their_shard_port() {
        let mut m = Metadata::default();
        let now = Instant::now();
        let errors = m.update(
            &response(vec![TopicMetadata {
                error_code: ErrorCode::None,
                name: "t".into(),
                partitions: vec![partition(0, 1), partition(1, 0), partition(2, 7)],
            }]),
            now,
            resolve_host,
        );
        assert!(errors.is_empty());
        let at = |port| Route::To(SocketAddr::from(([127, 0, 0, 1], port)));
        assert_eq!(m.route("t", 0), at(9101));
        assert_eq!(m.route("t", 1), at(9100));
        // A shard the broker did not list: its common port.
        assert_eq!(m.route("t", 2), at(9092));
        assert_eq!(m.route("t", 3), Route::NoPartition { partitions: 3 });
        assert_eq!(m.route("other", 0), Route::Unknown);
        assert!(m.topic("t").unwrap().is_fresh(now, Duration::from_secs(1)));
        assert!(!m
            .topic("t")
            .unwrap()
            .is_fresh(now + Duration::from_secs(1), Duration::from_secs(1)));
    }

    #[test]
    fn unknown_topics_are_remembered_until_found() {
        let mut m = Metadata::default();
        let now = Instant::now();
        let errors = m.update(
            &response(vec![TopicMetadata {
                error_code: ErrorCode::UnknownTopicOrPartition,
                name: "gone".into(),
                partitions: vec![],
            }]),
            now,
            resolve_host,
        );
        assert_eq!(
            errors,
            vec![("gone".to_string(), ErrorCode::UnknownTopicOrPartition)]
        );
        assert_eq!(m.route("gone", 0), Route::NoTopic);
        assert!(m.is_missing("gone"));
        m.update(
            &response(vec![TopicMetadata {
                error_code: ErrorCode::None,
                name: "gone".into(),
                partitions: vec![partition(0, 0)],
            }]),
            now,
            resolve_host,
        );
        assert!(!m.is_missing("gone"));
        assert_eq!(m.topic("gone").unwrap().partition_count(), 1);
        m.forget("gone");
        assert_eq!(m.route("gone", 0), Route::Unknown);
    }

    #[test]
    fn unresolvable_brokers_have_no_route() {
        let mut m = Metadata::default();
        m.update(
            &response(vec![TopicMetadata {
                error_code: ErrorCode::None,
                name: "t".into(),
                partitions: vec![partition(0, 0)],
            }]),
            Instant::now(),
            |_| None,
        );
        assert_eq!(m.route("t", 0), Route::Unknown);
    }
}
