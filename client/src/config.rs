//! Client, producer and consumer settings. Every limit names its unit last; each default is
//! documented on its field.

use quill_proto::protocol::Acks;

use super::error::ClientError;

/// The default broker address, the one `quill serve` listens on without `--listen`.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// How a [`Client`](super::Client) reaches the cluster and how patient it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port` of any port of any broker (the common port or a shard port). Default
    /// `127.0.0.1:9092`.
    pub bootstrap: String,
    /// How long a request may wait for its response before the client gives up on it (and
    /// closes its connection). A fetch may additionally wait its own `max_wait_ms`. Default
    /// 30000.
    pub request_timeout_ms: u64,
    /// How long opening a TCP connection may take. Default 10000.
    pub connect_timeout_ms: u64,
    /// How many times a failed request is sent again when the failure is retriable
    /// (connection trouble, [`ErrorCode::is_retriable`](quill_proto::error_code::ErrorCode::is_retriable)).
    /// A timeout (connecting, or waiting for a response) is not retried: the worst case for an
    /// unresponsive broker is one `connect_timeout_ms` or `request_timeout_ms`, plus the fast
    /// failures retried before it. 0 disables retries. Default 10.
    pub retries_max: u32,
    /// Pause before each retry. Default 100.
    pub retry_backoff_ms: u64,
    /// Requests outstanding on one connection; more wait for a response first. Also capped by
    /// the broker's own `inflight_requests_max`. Default 256.
    pub inflight_requests_max: u32,
    /// Cached topic metadata older than this is refreshed when next used. Default 300000.
    pub metadata_max_age_ms: u64,
    /// Least time between two metadata refreshes of one topic caused by failures
    /// (`NOT_LEADER`, `LEADER_NOT_AVAILABLE`, a broker gone): during an election every retry
    /// would otherwise ask again. Default 100.
    pub metadata_refresh_backoff_ms: u64,
    /// Largest response frame accepted, size prefix excluded; a larger one is a protocol error.
    /// Must exceed the consumer's `fetch_bytes_max` plus a batch. Default 64 MiB.
    pub frame_bytes_max: u32,
    /// Sent in ApiVersions, for the broker's logs. Default `quill-rust/<version>`.
    pub client_software_name: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: DEFAULT_BOOTSTRAP.to_string(),
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            retries_max: 10,
            retry_backoff_ms: 100,
            inflight_requests_max: 256,
            metadata_max_age_ms: 300_000,
            metadata_refresh_backoff_ms: 100,
            frame_bytes_max: 64 << 20,
            client_software_name: concat!("quill-rust/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl ClientConfig {
    /// The defaults, with `bootstrap` as the broker address.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ClientConfig {
            bootstrap: bootstrap.into(),
            ..ClientConfig::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |reason: &str| {
            Err(ClientError::InvalidArgument {
                what: "client configuration",
                reason: reason.to_string(),
            })
        };
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be at least 1");
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms must be at least 1");
        }
        if self.inflight_requests_max == 0 {
            return bad("inflight_requests_max must be at least 1");
        }
        if self.frame_bytes_max < 1024 {
            return bad("frame_bytes_max must be at least 1024");
        }
        Ok(())
    }
}

/// How a [`Producer`](super::Producer) batches and acknowledges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long a batch may wait for more records before it is sent, counted from its first
    /// record. 0 sends as soon as the sender task runs (records sent meanwhile still share a
    /// batch). Default 1.
    pub linger_ms: u64,
    /// A batch is closed once the next record would take it past this size (a record larger
    /// than this gets a batch of its own). Capped by the broker's `batch_bytes_max`. Default
    /// 64 KiB.
    pub batch_bytes: usize,
    /// [`Acks::Leader`]: a record's delivery resolves once the partition's leader made it
    /// durable, with its offset. [`Acks::All`]: once a majority of the partition's replicas
    /// hold it durably (the same as `Leader` on a partition with one replica). [`Acks::None`]:
    /// once it was written to the socket, with offset -1; failures go unreported. Default
    /// `Leader`.
    pub acks: Acks,
    /// How long a record may take to be acknowledged, from when its batch was opened, retries
    /// included: retriable failures (a leader moving, an election, a broker going away) are
    /// retried transparently, after a metadata refresh where the leader may have moved, until
    /// this runs out; then the delivery fails with
    /// [`ClientError::DeliveryTimedOut`](super::ClientError::DeliveryTimedOut) naming the last
    /// error. Default 120000 (Kafka's `delivery.timeout.ms`).
    pub delivery_timeout_ms: u64,
    /// Memory for records not yet acknowledged, counted as the capacity of their batches (each
    /// batch reserves `batch_bytes`). `send` waits while it is full. At least `batch_bytes`.
    /// Default 32 MiB.
    pub buffer_bytes_max: usize,
    /// Produce requests in flight per partition. 1 keeps a partition's records in send order
    /// even across retries; more lets one partition pipeline, but a retry may then reorder its
    /// records. Default 1.
    pub partition_inflight_requests_max: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger_ms: 1,
            batch_bytes: 64 << 10,
            acks: Acks::Leader,
            delivery_timeout_ms: 120_000,
            buffer_bytes_max: 32 << 20,
            partition_inflight_requests_max: 1,
        }
    }
}

impl ProducerConfig {
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |reason: &str| {
            Err(ClientError::InvalidArgument {
                what: "producer configuration",
                reason: reason.to_string(),
            })
        };
        if self.batch_bytes < quill_proto::record::BATCH_HEADER_BYTES + 16 {
            return bad("batch_bytes must be at least 77");
        }
        if self.buffer_bytes_max < self.batch_bytes {
            return bad("buffer_bytes_max must be at least batch_bytes");
        }
        if self.partition_inflight_requests_max == 0 {
            return bad("partition_inflight_requests_max must be at least 1");
        }
        if self.delivery_timeout_ms == 0 {
            return bad("delivery_timeout_ms must be at least 1");
        }
        Ok(())
    }
}

/// Where a consumer goes when its position is outside the partition's log
/// (`OFFSET_OUT_OF_RANGE`): data below it was deleted by retention, or an offset was asked for
/// that does not exist yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AutoReset {
    /// Continue from the oldest record still stored (the log start offset).
    #[default]
    Earliest,
    /// Continue from the high watermark: only records produced from now on.
    Latest,
    /// Fail the poll with [`ClientError::OffsetOutOfRange`].
    Error,
}

/// How a [`Consumer`](super::Consumer) fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The longest a fetch waits at the broker for data (its `max_wait_ms`, capped by the
    /// broker's `fetch_wait_ms_max`). A consumer at the end of the log waits this long per
    /// fetch; it never spins. Default 500.
    pub fetch_wait_ms_max: u32,
    /// A fetch returns as soon as this many record bytes are there. Default 1.
    pub fetch_bytes_min: u32,
    /// Most record bytes one fetch response carries (across partitions). Default 8 MiB.
    pub fetch_bytes_max: u32,
    /// Most record bytes one partition contributes to a fetch response. Default 1 MiB.
    pub partition_fetch_bytes_max: u32,
    /// What to do on `OFFSET_OUT_OF_RANGE`. Default [`AutoReset::Earliest`].
    pub auto_reset: AutoReset,
    /// Check every fetched batch's CRC-32C and structure before reading it. Default true.
    pub check_crcs: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_wait_ms_max: 500,
            fetch_bytes_min: 1,
            fetch_bytes_max: 8 << 20,
            partition_fetch_bytes_max: 1 << 20,
            auto_reset: AutoReset::Earliest,
            check_crcs: true,
        }
    }
}

impl ConsumerConfig {
    pub(crate) fn validate(&self, client: &ClientConfig) -> Result<(), ClientError> {
        let bad = |reason: String| {
            Err(ClientError::InvalidArgument {
                what: "consumer configuration",
                reason,
            })
        };
        if self.fetch_bytes_max == 0 || self.partition_fetch_bytes_max == 0 {
            return bad("fetch_bytes_max and partition_fetch_bytes_max must be at least 1".into());
        }
        // A response carries up to fetch_bytes_max, plus one batch over it (the first batch is
        // always whole), plus small fields.
        let need = u64::from(self.fetch_bytes_max) + (2 << 20);
        if u64::from(client.frame_bytes_max) < need {
            return bad(format!(
                "fetch_bytes_max {} needs the client's frame_bytes_max to be at least {need}",
                self.fetch_bytes_max
            ));
        }
        Ok(())
    }
}
