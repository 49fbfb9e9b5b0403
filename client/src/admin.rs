//! [`Admin`]: create, delete, list and describe topics.

use super::cluster::{Client, Retry};
use super::error::ClientError;
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{
    is_valid_topic_name, CreateTopicRequest, DeleteTopicRequest, DescribeClusterRequest,
    DescribeClusterResponse, Durability, MetadataRequest, Request, Response, Retention,
};

/// A topic to create. Settings left unset take the broker's defaults.
///
/// ```no_run
/// use quill_client::{Durability, NewTopic, Retention};
///
/// let topic = NewTopic::new("orders", 6)
///     .retention_ms(Retention::Limit(7 * 24 * 3600 * 1000))
///     .durability(Durability::Sync);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// At least 1.
    pub partitions: u32,
    /// Delete whole segments older than this many ms.
    pub retention_ms: Retention,
    /// Delete the oldest segments while a partition is larger than this many bytes.
    pub retention_bytes: Retention,
    /// Roll to a new segment at this size in bytes.
    pub segment_bytes: Option<u64>,
    /// Roll to a new segment at this age in ms.
    pub segment_ms: Option<u64>,
    /// When an `acks = leader` produce is answered: after fdatasync, or after the write.
    pub durability: Option<Durability>,
    /// Longest time between syncs under interval durability, in ms.
    pub flush_ms: Option<u64>,
    /// How many nodes hold a replica of each partition, the leader included; 0 for the
    /// broker's default. More than the live nodes is refused (`INVALID_REPLICATION_FACTOR`).
    pub replication_factor: u16,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            retention_ms: Retention::Default,
            retention_bytes: Retention::Default,
            segment_bytes: None,
            segment_ms: None,
            durability: None,
            flush_ms: None,
            replication_factor: 0,
        }
    }

    pub fn replication_factor(mut self, replicas: u16) -> Self {
        self.replication_factor = replicas;
        self
    }

    pub fn retention_ms(mut self, retention: Retention) -> Self {
        self.retention_ms = retention;
        self
    }

    pub fn retention_bytes(mut self, retention: Retention) -> Self {
        self.retention_bytes = retention;
        self
    }

    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = Some(bytes);
        self
    }

    pub fn segment_ms(mut self, ms: u64) -> Self {
        self.segment_ms = Some(ms);
        self
    }

    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    pub fn flush_ms(mut self, ms: u64) -> Self {
        self.flush_ms = Some(ms);
        self
    }
}

/// A topic's name and partition count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
}

/// One partition of a described topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    /// `NONE`, or why the fields below are meaningless (for example the owning shard is
    /// shutting down).
    pub error_code: ErrorCode,
    /// The broker that leads the partition.
    pub leader_node: u32,
    /// The shard (core) of that broker that owns it.
    pub leader_shard: u16,
    pub leader_epoch: i32,
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// Consumers read below it.
    pub high_watermark: i64,
    /// The offset the next record appended gets.
    pub log_end_offset: i64,
    /// Damaged ranges `(first, last)`: offsets the broker holds but cannot serve (a consumer
    /// skips them); empty from a broker without Metadata version 1.
    pub damaged_ranges: Vec<(i64, i64)>,
    /// The nodes holding a replica, the leader included, in placement order; empty from a
    /// broker without Metadata version 2.
    pub replicas: Vec<u32>,
    /// The replicas the leader counts as in sync; empty from a broker without Metadata
    /// version 2.
    pub in_sync: Vec<u32>,
}

/// A topic and its partitions, as Metadata reports them now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
    /// The cluster's metadata leader, if the broker named it (Metadata version 2).
    pub controller_node: Option<u32>,
}

/// Topic administration. Made by [`Client::admin`]; cheap (it shares the client).
///
/// ```no_run
/// use quill_client::{Client, ClientConfig, NewTopic};
///
/// glommio::LocalExecutor::default().run(async {
///     let admin = Client::connect(ClientConfig::default()).await?.admin();
///     admin.create_topic(NewTopic::new("orders", 3)).await?;
///     for t in admin.list_topics().await? {
///         println!("{} ({} partitions)", t.name, t.partitions);
///     }
///     let d = admin.describe_topic("orders").await?;
///     println!("partition 0 is on shard {}", d.partitions[0].leader_shard);
///     admin.delete_topic("orders").await?;
///     Ok::<(), quill_client::ClientError>(())
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Admin {
    client: Client,
}

fn check_name(name: &str) -> Result<(), ClientError> {
    if is_valid_topic_name(name) {
        Ok(())
    } else {
        Err(ClientError::InvalidTopicName {
            topic: name.to_string(),
        })
    }
}

fn unexpected(what: &str, response: &Response) -> ClientError {
    ClientError::Protocol {
        addr: "bootstrap broker".to_string(),
        reason: format!("{what} answered with {:?}", response.api_key()),
    }
}

impl Client {
    /// Topic administration through this client. See [`Admin`].
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }
}

impl Admin {
    pub(crate) fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// Creates a topic. [`ClientError::TopicExists`] if it exists already.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<(), ClientError> {
        check_name(&topic.name)?;
        if topic.partitions == 0 {
            return Err(ClientError::InvalidArgument {
                what: "partition count",
                reason: "a topic needs at least one partition".to_string(),
            });
        }
        let name = topic.name.clone();
        let request = Request::CreateTopic(CreateTopicRequest {
            // Version 1 only when a replication factor is asked for, so a plain create stays
            // readable by older brokers.
            version: u16::from(topic.replication_factor != 0),
            replication_factor: topic.replication_factor,
            name: topic.name,
            partitions: topic.partitions,
            retention_ms: topic.retention_ms,
            retention_bytes: topic.retention_bytes,
            segment_bytes: topic.segment_bytes,
            segment_ms: topic.segment_ms,
            durability: topic.durability,
            flush_ms: topic.flush_ms,
        });
        match self
            .client
            .call_controller(&request, Retry::NotIdempotent)
            .await?
        {
            Response::CreateTopic => {
                self.client.forget_topic(&name);
                Ok(())
            }
            Response::Error { code, message } => {
                Err(ClientError::from_code(code, message, &name, None, || {
                    format!("create topic '{name}'")
                }))
            }
            other => Err(unexpected("CreateTopic", &other)),
        }
    }

    /// Deletes a topic and all its data. [`ClientError::UnknownTopic`] if it does not exist.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        check_name(name)?;
        let request = Request::DeleteTopic(DeleteTopicRequest {
            name: name.to_string(),
        });
        let outcome = self
            .client
            .call_controller(&request, Retry::NotIdempotent)
            .await?;
        self.client.forget_topic(name);
        match outcome {
            Response::DeleteTopic => Ok(()),
            Response::Error { code, message } => {
                Err(ClientError::from_code(code, message, name, None, || {
                    format!("delete topic '{name}'")
                }))
            }
            other => Err(unexpected("DeleteTopic", &other)),
        }
    }

    /// Every topic with its partition count, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        match self
            .client
            .call_any(&Request::ListTopics, Retry::Idempotent)
            .await?
        {
            Response::ListTopics(l) => {
                let mut out: Vec<TopicSummary> = l
                    .topics
                    .into_iter()
                    .map(|t| TopicSummary {
                        name: t.name,
                        partitions: t.partitions,
                    })
                    .collect();
                out.sort();
                Ok(out)
            }
            Response::Error { code, message } => Err(ClientError::Broker {
                code,
                message,
                context: "list topics".to_string(),
            }),
            other => Err(unexpected("ListTopics", &other)),
        }
    }

    /// A topic's partitions with their leader shard and offsets, as of now.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        check_name(name)?;
        let request = Request::Metadata(MetadataRequest::latest(Some(vec![name.to_string()])));
        let response = match self.client.call_any(&request, Retry::Idempotent).await? {
            Response::Metadata(m) => m,
            // An older broker: describe without damaged ranges or replicas.
            Response::Error {
                code: ErrorCode::UnsupportedVersion,
                ..
            } => match self
                .client
                .call_any(
                    &Request::Metadata(MetadataRequest::new(Some(vec![name.to_string()]))),
                    Retry::Idempotent,
                )
                .await?
            {
                Response::Metadata(m) => m,
                Response::Error { code, message } => {
                    return Err(ClientError::Broker {
                        code,
                        message,
                        context: format!("describe topic '{name}'"),
                    })
                }
                other => return Err(unexpected("Metadata", &other)),
            },
            Response::Error { code, message } => {
                return Err(ClientError::Broker {
                    code,
                    message,
                    context: format!("describe topic '{name}'"),
                })
            }
            other => return Err(unexpected("Metadata", &other)),
        };
        let damaged = response.damaged_ranges.unwrap_or_default();
        let controller_node = u32::try_from(response.controller_node).ok();
        let Some(t) = response.topics.into_iter().find(|t| t.name == name) else {
            return Err(ClientError::UnknownTopic {
                topic: name.to_string(),
            });
        };
        if !t.error_code.is_none() {
            return Err(ClientError::from_code(
                t.error_code,
                None,
                name,
                None,
                || format!("describe topic '{name}'"),
            ));
        }
        Ok(TopicDescription {
            name: t.name,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| PartitionDescription {
                    partition: p.partition,
                    error_code: p.error_code,
                    leader_node: p.leader_node,
                    leader_shard: p.leader_shard,
                    leader_epoch: p.leader_epoch,
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    log_end_offset: p.log_end_offset,
                    damaged_ranges: damaged
                        .iter()
                        .filter(|d| d.topic == name && d.partition == p.partition)
                        .map(|d| (d.first_offset, d.last_offset))
                        .collect(),
                    replicas: p.replicas,
                    in_sync: p.in_sync,
                })
                .collect(),
            controller_node,
        })
    }

    /// The cluster as the answering broker sees it (DescribeCluster): nodes and whether they
    /// are up, the metadata leader, and for each partition of `topics` (`None`: all) its leader
    /// and every replica's lag, with the count of under-replicated partitions.
    pub async fn describe_cluster(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<DescribeClusterResponse, ClientError> {
        let request = Request::DescribeCluster(DescribeClusterRequest { topics });
        match self.client.call_any(&request, Retry::Idempotent).await? {
            Response::DescribeCluster(d) => Ok(d),
            Response::Error { code, message } => Err(ClientError::Broker {
                code,
                message,
                context: "describe cluster".to_string(),
            }),
            other => Err(unexpected("DescribeCluster", &other)),
        }
    }
}
