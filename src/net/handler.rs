//! The native protocol's adapter: turns each decoded request into calls of the shard's partition
//! service and topic admin (domain types), and their results into the response (wire types,
//! errors mapped in `errors.rs`). Returns the response to send, or `None` when the protocol says
//! not to answer (produce with `acks = 0`). A partition named twice in one request is refused
//! here; a multi-partition fetch's shared wait and byte budget are the service's
//! (`PartitionService::fetch_many`), since every protocol's Fetch has them.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::error_code::ErrorCode;
use super::errors::{leader_hint, partition_code, topic_code};
use super::protocol::{
    is_valid_topic_name, Acks, ApiVersionsResponse, BrokerMetadata, ClusterNode, ClusterPartition,
    ClusterReplica, ClusterTopic, CreateTopicRequest, DamagedRangeMetadata, DescribeClusterRequest,
    DescribeClusterResponse, Durability as WireDurability, FetchPartitionResponse, FetchRequest,
    FetchResponse, FetchTopicResponse, LeaderHint, Limits, ListOffsetsPartitionResponse,
    ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResponse, ListTopicsResponse,
    MetadataRequest, MetadataResponse, PartitionMetadata, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopicResponse, Request, Response, Retention, ShardPort, TopicListing,
    TopicMetadata,
};
use crate::shard::{
    ClusterView, FetchMany, Fetched, OffsetQuery, PartitionError, PartitionFetch, PartitionService,
    ProduceAcks, Shard, TopicConfig, TopicError, TopicRequest,
};
use crate::types::{Offset, TopicPartition};

/// What to send for a request, and whether to close the connection after it.
pub(crate) struct Outcome {
    pub(crate) response: Option<Response>,
    pub(crate) close: bool,
}

/// Handles one request.
pub(crate) async fn handle(shard: Rc<Shard>, request: Request) -> Outcome {
    let response = |r| Outcome {
        response: Some(r),
        close: false,
    };
    if shard.is_shutting_down() {
        return response(Response::Error {
            code: ErrorCode::BrokerShuttingDown,
            message: Some("the broker is shutting down".into()),
        });
    }
    response(match request {
        Request::ApiVersions(_) => Response::ApiVersions(api_versions(&shard)),
        Request::Metadata(req) => Response::Metadata(metadata(&shard, req).await),
        Request::CreateTopic(req) => match create_topic(&shard, req).await {
            Ok(()) => Response::CreateTopic,
            Err(e) => topic_error(e),
        },
        Request::DeleteTopic(req) => match shard.delete_topic(req.name).await {
            Ok(()) => Response::DeleteTopic,
            Err(e) => topic_error(e),
        },
        Request::ListTopics => Response::ListTopics(list_topics(&shard)),
        Request::Produce(req) => {
            let acks = req.acks;
            let pairs = req.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.as_str(), p.partition))
            });
            if let Some(e) = repeated_partition(pairs) {
                if acks == Acks::None {
                    return Outcome {
                        response: None,
                        close: true,
                    };
                }
                return response(e);
            }
            let resp = produce(&PartitionService::new(shard.clone()), req).await;
            if acks == Acks::None {
                // No response; a failure closes the connection so the client notices (Kafka's
                // behaviour for acks=0).
                let failed = resp
                    .topics
                    .iter()
                    .any(|t| t.partitions.iter().any(|p| p.error_code != ErrorCode::None));
                return Outcome {
                    response: None,
                    close: failed,
                };
            }
            Response::Produce(resp)
        }
        Request::Fetch(req) => {
            let pairs = req.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.as_str(), p.partition))
            });
            if let Some(e) = repeated_partition(pairs) {
                return response(e);
            }
            Response::Fetch(fetch(&PartitionService::new(shard.clone()), req).await)
        }
        Request::ListOffsets(req) => {
            Response::ListOffsets(list_offsets(&PartitionService::new(shard.clone()), req).await)
        }
        Request::DescribeCluster(req) => Response::DescribeCluster(
            describe_cluster(&PartitionService::new(shard.clone()), req).await,
        ),
    })
}

/// A partition may appear once per request (`docs/PROTOCOL.md`); a repeat fails the request.
fn repeated_partition<'a>(pairs: impl Iterator<Item = (&'a str, u32)>) -> Option<Response> {
    let mut seen = std::collections::HashSet::new();
    for (t, p) in pairs {
        if !seen.insert((t, p)) {
            return Some(Response::Error {
                code: ErrorCode::InvalidRequest,
                message: Some(format!("partition {t}-{p} appears twice in the request")),
            });
        }
    }
    None
}

fn topic_error(e: TopicError) -> Response {
    Response::Error {
        code: topic_code(&e),
        message: Some(e.to_string()),
    }
}

/// A wire offset from a domain one (offsets stay below `i64::MAX`).
fn wire(o: Offset) -> i64 {
    o.0 as i64
}

fn api_versions(shard: &Shard) -> ApiVersionsResponse {
    let l = &shard.config.limits;
    ApiVersionsResponse::supported(Limits {
        frame_bytes_max: l.frame_bytes_max,
        batch_bytes_max: shard.config.topic_defaults.batch_bytes_max,
        fetch_bytes_max: l.fetch_bytes_max,
        fetch_wait_ms_max: l.fetch_wait_ms_max,
        inflight_requests_max: l.inflight_requests_max,
        node_id: shard.config.node_id,
        shard_count: shard.shard_count as u16,
    })
}

async fn metadata(shard: &Rc<Shard>, req: MetadataRequest) -> MetadataResponse {
    let catalog = shard.catalog();
    let names: Vec<String> = match &req.topics {
        Some(t) => t.clone(),
        None => catalog.topics.keys().cloned().collect(),
    };
    let infos = PartitionService::new(shard.clone())
        .partition_info(Some(names.clone()))
        .await;
    let me = crate::types::NodeId(shard.config.node_id);
    // Every node clients can reach (a cluster node that has not registered yet has no address).
    let brokers = shard
        .cluster_nodes()
        .into_iter()
        .filter(|n| n.port != 0)
        .map(|n| BrokerMetadata {
            node_id: n.id.0,
            host: n.host,
            port: n.port,
            shard_ports: n
                .shard_ports
                .iter()
                .enumerate()
                .map(|(i, p)| ShardPort {
                    shard_id: i as u16,
                    port: *p,
                })
                .collect(),
        })
        .collect();
    let topics = names
        .into_iter()
        .map(|name| match catalog.topics.get(&name) {
            None if !is_valid_topic_name(&name) => TopicMetadata {
                error_code: ErrorCode::InvalidTopicName,
                name,
                partitions: Vec::new(),
            },
            // A cluster node still catching up on the metadata cannot say the topic is not
            // there: the client asks again.
            None if shard.metadata_behind() => TopicMetadata {
                error_code: ErrorCode::LeaderNotAvailable,
                name,
                partitions: Vec::new(),
            },
            None => TopicMetadata {
                error_code: ErrorCode::UnknownTopicOrPartition,
                name,
                partitions: Vec::new(),
            },
            Some(meta) => {
                let partitions = (0..meta.partitions)
                    .map(|p| {
                        // Every partition of a catalog topic has a placement (checked at start).
                        let place = meta.placement(p).expect("a placement per partition");
                        // Version 2: the placement's replicas; in sync, those the leader says.
                        let replicas: Vec<u32> = place.replicas.iter().map(|n| n.0).collect();
                        let unserved = |code| PartitionMetadata {
                            partition: p,
                            error_code: code,
                            leader_node: place.node.0,
                            leader_shard: place.shard.0,
                            leader_epoch: -1,
                            log_start_offset: -1,
                            high_watermark: -1,
                            log_end_offset: -1,
                            replicas: replicas.clone(),
                            in_sync: Vec::new(),
                        };
                        let info = infos
                            .iter()
                            .find(|i| i.tp.topic == name && i.tp.partition.0 == p);
                        match info.map(|i| &i.state) {
                            // This node leads it (a cluster node describes only those).
                            Some(Ok(state)) => PartitionMetadata {
                                partition: p,
                                error_code: ErrorCode::None,
                                leader_node: if shard.is_cluster() {
                                    me.0
                                } else {
                                    place.node.0
                                },
                                leader_shard: if shard.is_cluster() {
                                    place.shard_on(me).unwrap_or(place.shard).0
                                } else {
                                    place.shard.0
                                },
                                leader_epoch: state.leader_epoch.0,
                                log_start_offset: wire(state.offsets.log_start),
                                high_watermark: wire(state.offsets.high_watermark),
                                log_end_offset: wire(state.offsets.log_end),
                                in_sync: state
                                    .replicas
                                    .iter()
                                    .filter(|r| r.in_sync)
                                    .map(|r| r.node.0)
                                    .collect(),
                                replicas: replicas.clone(),
                            },
                            // Not opened (file descriptors, disk): the reason's code.
                            Some(Err(e)) => unserved(partition_code(e)),
                            // Cluster: led by another node, as the metadata records.
                            None if shard.is_cluster() => match shard.reported_leader(meta.id, p) {
                                Some(l) => PartitionMetadata {
                                    partition: p,
                                    error_code: ErrorCode::None,
                                    leader_node: l.node.0,
                                    leader_shard: l.shard.0,
                                    leader_epoch: crate::shard::replicas::epoch_of(l.term).0,
                                    log_start_offset: -1,
                                    high_watermark: -1,
                                    log_end_offset: -1,
                                    replicas: replicas.clone(),
                                    in_sync: l.in_sync.iter().map(|n| n.0).collect(),
                                },
                                None => unserved(ErrorCode::LeaderNotAvailable),
                            },
                            // The owner did not answer (shutting down) or has not opened it yet.
                            None => unserved(ErrorCode::BrokerShuttingDown),
                        }
                    })
                    .collect();
                TopicMetadata {
                    error_code: ErrorCode::None,
                    name,
                    partitions,
                }
            }
        })
        .collect();
    // Version 1: the damaged ranges of the partitions described.
    let damaged_ranges = req.damaged_ranges().then(|| {
        infos
            .iter()
            .filter_map(|i| Some((&i.tp, i.state.as_ref().ok()?)))
            .flat_map(|(tp, state)| {
                state
                    .damaged
                    .iter()
                    .map(|&(first, last)| DamagedRangeMetadata {
                        topic: tp.topic.clone(),
                        partition: tp.partition.0,
                        first_offset: wire(first),
                        last_offset: wire(last),
                    })
            })
            .collect()
    });
    MetadataResponse {
        brokers,
        topics,
        damaged_ranges,
        // Version 2: where topic admin goes.
        controller_node: shard.metadata_leader().map_or(-1, node_i32),
    }
}

fn node_i32(n: crate::types::NodeId) -> i32 {
    i32::try_from(n.0).unwrap_or(-1)
}

async fn describe_cluster(
    svc: &PartitionService,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let view: ClusterView = svc.describe_cluster(req.topics).await;
    let under_replicated = view.under_replicated_partitions();
    DescribeClusterResponse {
        metadata_leader: view.metadata_leader.map_or(-1, node_i32),
        nodes: view
            .nodes
            .into_iter()
            .map(|n| {
                let (replication_host, replication_port) = n.replication.unwrap_or_default();
                ClusterNode {
                    node_id: n.id.0,
                    host: n.host,
                    port: n.port,
                    replication_host,
                    replication_port,
                    up: n.up,
                }
            })
            .collect(),
        topics: view
            .topics
            .into_iter()
            .map(|t| match t.partitions {
                Err(e) => ClusterTopic {
                    error_code: partition_code(&e),
                    name: t.name,
                    partitions: Vec::new(),
                },
                Ok(partitions) => ClusterTopic {
                    error_code: ErrorCode::None,
                    name: t.name,
                    partitions: partitions
                        .iter()
                        .map(|p| ClusterPartition {
                            partition: p.partition,
                            error_code: p.error.as_ref().map_or(ErrorCode::None, partition_code),
                            leader_node: p.leader.map_or(-1, |(n, _)| node_i32(n)),
                            leader_shard: p
                                .leader
                                .map_or(-1, |(_, s)| i16::try_from(s.0).unwrap_or(-1)),
                            leader_epoch: p.leader_epoch.map_or(-1, |e| e.0),
                            high_watermark: p.offsets.map_or(-1, |o| wire(o.high_watermark)),
                            log_end_offset: p.offsets.map_or(-1, |o| wire(o.log_end)),
                            replicas: p
                                .replicas
                                .iter()
                                .map(|r| ClusterReplica {
                                    node_id: r.node.0,
                                    lag_records: p
                                        .lag_records(r)
                                        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
                                    in_sync: r.in_sync,
                                })
                                .collect(),
                        })
                        .collect(),
                },
            })
            .collect(),
        under_replicated_partitions: u32::try_from(under_replicated).unwrap_or(u32::MAX),
    }
}

/// Applies the broker defaults to what the client left unset.
fn topic_config(shard: &Shard, req: &CreateTopicRequest) -> Result<TopicConfig, TopicError> {
    let invalid = TopicError::InvalidConfig;
    let defaults = shard.config.default_log_config().map_err(invalid)?;
    let mut c = TopicConfig::from_log_config(&defaults);
    match req.retention_ms {
        Retention::Default => {}
        Retention::Forever => c.retention_ms = None,
        Retention::Limit(ms) => {
            c.retention_ms =
                Some(i64::try_from(ms).map_err(|_| invalid("retention_ms too large".into()))?)
        }
    }
    match req.retention_bytes {
        Retention::Default => {}
        Retention::Forever => c.retention_bytes = None,
        Retention::Limit(b) => c.retention_bytes = Some(b),
    }
    if let Some(b) = req.segment_bytes {
        c.segment_bytes = b;
        // A batch never exceeds a segment.
        c.batch_bytes_max = c.batch_bytes_max.min(b as usize);
    }
    if let Some(ms) = req.segment_ms {
        c.segment_ms = i64::try_from(ms).map_err(|_| invalid("segment_ms too large".into()))?;
    }
    if let Some(d) = req.durability {
        c.durability = match d {
            WireDurability::Sync => "sync".into(),
            WireDurability::Interval => "interval".into(),
        };
    }
    if let Some(ms) = req.flush_ms {
        c.flush_ms = ms;
    }
    c.log_config().map_err(invalid)?;
    Ok(c)
}

async fn create_topic(shard: &Shard, req: CreateTopicRequest) -> Result<(), TopicError> {
    let config = topic_config(shard, &req)?;
    shard
        .create_topic(TopicRequest {
            name: req.name,
            partitions: req.partitions,
            // Version 0 carries 0: the broker's default.
            replication_factor: req.replication_factor,
            config,
        })
        .await
}

fn list_topics(shard: &Shard) -> ListTopicsResponse {
    ListTopicsResponse {
        topics: shard
            .catalog()
            .topics
            .values()
            .map(|t| TopicListing {
                name: t.name.clone(),
                partitions: t.partitions,
            })
            .collect(),
    }
}

async fn produce(svc: &PartitionService, req: ProduceRequest) -> ProduceResponse {
    // `timeout_ms` bounds the wait before the batches are appended; past it a partition is not
    // appended and answers REQUEST_TIMED_OUT. Once appended, the answer is the append's outcome
    // (`docs/PROTOCOL.md`, "5 Produce"), so the error never hides an appended batch.
    let deadline = Instant::now() + Duration::from_millis(u64::from(req.timeout_ms));
    // acks 0 appends like acks 1; only the answer differs (the caller drops it).
    let acks = match req.acks {
        Acks::All => ProduceAcks::All,
        Acks::Leader | Acks::None => ProduceAcks::Leader,
    };
    // Every partition is appended concurrently (each on its owning shard); the response mirrors
    // the request entry for entry.
    let mut pending = Vec::new();
    for t in req.topics {
        let mut parts = Vec::new();
        for p in t.partitions {
            let svc = svc.clone();
            let tp = TopicPartition::new(t.name.as_str(), p.partition);
            let partition = p.partition;
            let task =
                glommio::spawn_local(
                    async move { svc.produce(tp, p.records, deadline, acks).await },
                );
            parts.push((partition, task));
        }
        pending.push((t.name, parts));
    }
    let mut topics = Vec::with_capacity(pending.len());
    for (name, parts) in pending {
        let mut partitions = Vec::with_capacity(parts.len());
        for (partition, task) in parts {
            partitions.push(match task.await {
                Ok(base_offsets) => ProducePartitionResponse {
                    partition,
                    error_code: ErrorCode::None,
                    error_message: None,
                    base_offsets: base_offsets.into_iter().map(wire).collect(),
                    leader: LeaderHint::UNKNOWN,
                },
                Err(e) => ProducePartitionResponse {
                    partition,
                    error_code: partition_code(&e),
                    error_message: Some(e.to_string()),
                    base_offsets: Vec::new(),
                    leader: leader_hint(&e),
                },
            });
        }
        topics.push(ProduceTopicResponse { name, partitions });
    }
    ProduceResponse { topics }
}

fn fetched_response(partition: u32, r: Result<Fetched, PartitionError>) -> FetchPartitionResponse {
    match r {
        Ok(f) => FetchPartitionResponse {
            partition,
            error_code: ErrorCode::None,
            error_message: None,
            leader: LeaderHint::UNKNOWN,
            high_watermark: wire(f.offsets.high_watermark),
            log_start_offset: wire(f.offsets.log_start),
            log_end_offset: wire(f.offsets.log_end),
            records: f.batches,
        },
        Err(e) => {
            // An out-of-range fetch tells the valid range; other errors have no offsets.
            let (start, hw, end) = match &e {
                PartitionError::OffsetOutOfRange { offsets: o, .. } => {
                    (wire(o.log_start), wire(o.high_watermark), wire(o.log_end))
                }
                _ => (-1, -1, -1),
            };
            FetchPartitionResponse {
                partition,
                error_code: partition_code(&e),
                error_message: Some(e.to_string()),
                leader: leader_hint(&e),
                high_watermark: hw,
                log_start_offset: start,
                log_end_offset: end,
                records: Vec::new(),
            }
        }
    }
}

/// A fetch of every partition the request names, as the service takes it. A negative wire
/// offset is a position before any log.
fn fetch_many(req: &FetchRequest) -> FetchMany {
    FetchMany {
        partitions: req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| PartitionFetch {
                    tp: TopicPartition::new(t.name.as_str(), p.partition),
                    offset: u64::try_from(p.fetch_offset).ok().map(Offset),
                    max_bytes: p.partition_max_bytes as usize,
                })
            })
            .collect(),
        max_wait: Duration::from_millis(u64::from(req.max_wait_ms)),
        min_bytes: req.min_bytes as usize,
        max_bytes: req.max_bytes as usize,
    }
}

async fn fetch(svc: &PartitionService, req: FetchRequest) -> FetchResponse {
    let mut results = svc.fetch_many(&fetch_many(&req)).await.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| FetchTopicResponse {
            partitions: t
                .partitions
                .iter()
                .zip(results.by_ref())
                .map(|(p, r)| fetched_response(p.partition, r))
                .collect(),
            name: t.name,
        })
        .collect();
    FetchResponse { topics }
}

async fn list_offsets(svc: &PartitionService, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            // -1 latest, -2 earliest, else a time (a negative one is refused by the service).
            let query = match p.timestamp {
                -1 => OffsetQuery::Latest,
                -2 => OffsetQuery::Earliest,
                t => OffsetQuery::AtTime(t),
            };
            let tp = TopicPartition::new(t.name.as_str(), p.partition);
            partitions.push(match svc.list_offset(tp, query).await {
                Ok(offset) => ListOffsetsPartitionResponse {
                    partition: p.partition,
                    error_code: ErrorCode::None,
                    // No record at or after the time: -1.
                    offset: offset.map_or(-1, wire),
                    leader: LeaderHint::UNKNOWN,
                },
                Err(e) => ListOffsetsPartitionResponse {
                    partition: p.partition,
                    error_code: partition_code(&e),
                    offset: -1,
                    leader: leader_hint(&e),
                },
            });
        }
        topics.push(ListOffsetsTopicResponse {
            name: t.name,
            partitions,
        });
    }
    ListOffsetsResponse { topics }
}

/// The first error a response carries, at the top or in a partition, for the request log.
pub(crate) fn first_error(response: &Response) -> Option<ErrorCode> {
    fn first(codes: impl Iterator<Item = ErrorCode>) -> Option<ErrorCode> {
        let mut codes = codes;
        codes.find(|c| !c.is_none())
    }
    match response {
        Response::Error { code, .. } => Some(*code),
        Response::Produce(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        Response::Fetch(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        Response::ListOffsets(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        Response::Metadata(r) => first(r.topics.iter().map(|t| t.error_code)),
        Response::DescribeCluster(r) => first(r.topics.iter().map(|t| t.error_code)),
        _ => None,
    }
}
