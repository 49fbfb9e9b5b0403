//! The Rust client of the native protocol: producer, consumer and admin, async and blocking.
//!
//! # Two APIs
//!
//! - **Async** ([`Client`], [`Producer`], [`Consumer`], [`Admin`]): runs inside a glommio
//!   executor, one client per executor (thread-per-core, like the broker). It is the fast
//!   path: no locks, no syscall and no allocation per record beyond the record's own bytes.
//! - **Blocking** ([`blocking`]): for ordinary programs. It runs the async client on its own
//!   background glommio thread and forwards each call over a channel.
//!
//! # How it talks to the broker
//!
//! The client connects to the bootstrap address, asks ApiVersions (the broker's limits) and
//! Metadata (brokers, their shard ports, each partition's owning shard), and then sends each
//! partition's produce, fetch and list-offsets requests straight to the port of the shard that
//! owns it, so they land on the right core with no hop (`docs/PROTOCOL.md`, "Shard-aware
//! clients"). It keeps one connection per (broker, port), pipelined: many requests in flight,
//! responses matched in order by correlation id.
//!
//! # Reliability
//!
//! Retriable failures (lost connections, and the wire codes marked retriable such as
//! `UNKNOWN_TOPIC_OR_PARTITION` or `BROKER_SHUTTING_DOWN`) are retried up to `retries_max`
//! times, `retry_backoff_ms` apart, refreshing metadata when a leader may have moved. A
//! timeout (`connect_timeout_ms`, `request_timeout_ms`) is not retried, so an unresponsive
//! broker fails a call in about one timeout. A peer whose first answer is not the protocol's
//! is reported at once as [`ClientError::NotQuill`]. Other failures surface as a typed
//! [`ClientError`]. Producing is at least once: a batch whose
//! connection broke mid-request may have been appended before it is sent again.
//!
//! # Layout
//!
//! The cores are sans-I/O and tested without a broker: `correlation` (matching responses to
//! requests), `metadata` (the cluster view and routing), [`partitioner`] (murmur2 key hash,
//! sticky round robin), `accumulator` (per-partition batching with linger, size and memory
//! bounds), `decode` (records out of fetched batches). `connection`, `cluster`, `producer`,
//! `consumer` and `admin` drive them with glommio; `blocking` and `bridge` carry calls in from
//! other threads.
//!
//! ```no_run
//! use std::time::Duration;
//! use quill_client::{Client, ClientConfig, ConsumerConfig, NewTopic, ProducerConfig,
//!                     ProducerRecord, StartOffset};
//!
//! glommio::LocalExecutor::default().run(async {
//!     let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//!     client.admin().create_topic(NewTopic::new("clicks", 4)).await?;
//!
//!     let producer = client.producer(ProducerConfig::default())?;
//!     let delivery = producer.send(ProducerRecord::new("clicks", "/home").with_key("u1")).await?;
//!     let meta = delivery.await?;
//!
//!     let consumer = client.consumer(ConsumerConfig::default())?;
//!     consumer.assign("clicks", Some(vec![meta.partition]), StartOffset::Offset(meta.offset)).await?;
//!     let records = consumer.poll(Duration::from_secs(5)).await?;
//!     assert_eq!(records[0].value.as_deref(), Some(&b"/home"[..]));
//!     Ok::<(), quill_client::ClientError>(())
//! })
//! .unwrap();
//! ```

mod accumulator;
mod admin;
pub mod blocking;
mod bridge;
mod cluster;
mod config;
mod connection;
mod consumer;
mod correlation;
mod decode;
mod error;
mod metadata;
pub mod partitioner;
mod producer;
mod records;
mod retry;

pub use admin::{Admin, NewTopic, PartitionDescription, TopicDescription, TopicSummary};
pub use cluster::Client;
pub use config::{AutoReset, ClientConfig, ConsumerConfig, ProducerConfig, DEFAULT_BOOTSTRAP};
pub use consumer::{Consumer, StartOffset};
pub use error::ClientError;
pub use partitioner::{murmur2, partition_for_key, Partitioner};
pub use producer::{Delivery, Producer, ProducerStats};
pub use records::{ConsumedRecord, Header, ProducerRecord, RecordMetadata};

pub use quill_proto::error_code::ErrorCode;
pub use quill_proto::protocol::{
    Acks, ClusterNode, ClusterPartition, ClusterReplica, ClusterTopic, DescribeClusterResponse,
    Durability, LeaderHint, Limits, Retention,
};
