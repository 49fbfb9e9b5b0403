//! [`Producer`]: sends records in batches, per partition, to the shard that owns each
//! partition.
//!
//! `send` picks the partition ([`Partitioner`]), encodes the record into its partition's open
//! batch ([`Accumulator`]) and returns a [`Delivery`] future. A sender task drains sendable
//! batches (full ones, ones older than `linger_ms`, or all on `flush`), groups them by the
//! connection of each partition's owning shard, and sends one Produce request per group
//! without waiting for earlier ones: many batches and requests are in flight per connection,
//! at most `partition_inflight_requests_max` requests per partition. Responses resolve the
//! deliveries; retriable failures go back to the front of their partition after
//! `retry_backoff_ms`, within `delivery_timeout_ms`, with a metadata refresh (and the broker's
//! leader hint) when the leader may have moved; the rule is the sans-I/O `retry::decide`.
//!
//! Per record there is no allocation beyond the record's own bytes and no syscall: a delivery
//! is a shared handle on its batch plus an index, and the bytes go to the socket a batch (or
//! many) at a time.
//!
//! Delivery is at least once: a produce whose connection broke may have been appended, and
//! its retry appends it again.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::Task;

use super::accumulator::{
    Accumulator, AccumulatorConfig, AppendError, RecordRef, SealedBatch, Unit,
};
use super::cluster::Client;
use super::config::ProducerConfig;
use super::connection::Connection;
use super::error::ClientError;
use super::metadata::Route;
use super::partitioner::Partitioner;
use super::records::{ProducerRecord, RecordMetadata};
use super::retry::{self, RetryPolicy, Verdict};
use quill_proto::error_code::ErrorCode;
use quill_proto::local::Event;
use quill_proto::protocol::{
    Acks, ProducePartition, ProduceRequest, ProduceTopic, Request, Response,
};

/// Room left in a request frame for everything but the batches.
const REQUEST_OVERHEAD_BYTES: usize = 64 << 10;
/// Most batch bytes of one partition in one request.
const UNIT_BYTES_MAX: usize = 8 << 20;
/// Extra time a produce waits for its response beyond the broker-side timeout it asks for.
const PRODUCE_GRACE: Duration = Duration::from_secs(1);

/// The outcome of one batch, shared by the deliveries of its records.
struct BatchState {
    topic: Arc<str>,
    partition: u32,
    /// The batch's base offset (-1 with acks none), or why it failed.
    outcome: RefCell<Option<Result<i64, ClientError>>>,
    wakers: RefCell<Vec<Waker>>,
}

impl BatchState {
    fn new(topic: Arc<str>, partition: u32) -> Self {
        BatchState {
            topic,
            partition,
            outcome: RefCell::new(None),
            wakers: RefCell::new(Vec::new()),
        }
    }

    fn resolve(&self, outcome: Result<i64, ClientError>) {
        {
            let mut slot = self.outcome.borrow_mut();
            if slot.is_some() {
                return;
            }
            *slot = Some(outcome);
        }
        for w in self.wakers.take() {
            w.wake();
        }
    }
}

/// Resolves to a record's [`RecordMetadata`] once the broker acknowledged it (with
/// [`Acks::Leader`]) or once it was written to the socket (with [`Acks::None`]), or to the
/// error that made the producer give up on it.
#[must_use = "a delivery reports whether the record was written"]
pub struct Delivery {
    batch: Rc<BatchState>,
    index: u32,
    timestamp_ms: i64,
}

impl Delivery {
    /// The topic the record goes to.
    pub fn topic(&self) -> &str {
        &self.batch.topic
    }

    /// The partition the record goes to.
    pub fn partition(&self) -> u32 {
        self.batch.partition
    }

    /// Whether the outcome is known yet and, if so, whether the record was delivered; cheaper
    /// than [`Delivery::try_result`] (it builds no metadata), for callers that track many
    /// records, such as a load generator draining the deliveries of a batch at once.
    pub fn delivered(&self) -> Option<bool> {
        self.batch.outcome.borrow().as_ref().map(|o| o.is_ok())
    }

    /// The result, if it is known already.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ClientError>> {
        let outcome = self.batch.outcome.borrow();
        outcome.as_ref().map(|o| self.result(o))
    }

    fn result(&self, outcome: &Result<i64, ClientError>) -> Result<RecordMetadata, ClientError> {
        match outcome {
            Ok(base) => Ok(RecordMetadata {
                topic: self.batch.topic.clone(),
                partition: self.batch.partition,
                offset: if *base < 0 {
                    -1
                } else {
                    base + i64::from(self.index)
                },
                timestamp_ms: self.timestamp_ms,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.batch.outcome.borrow().as_ref() {
            return Poll::Ready(self.result(outcome));
        }
        let mut wakers = self.batch.wakers.borrow_mut();
        if !wakers.last().is_some_and(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Counters of a producer since it was created (a metrics hook).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records accepted by `send`.
    pub records: u64,
    /// Batches acknowledged (or written, with acks none).
    pub batches_acked: u64,
    /// Batches given up on (their records' deliveries failed).
    pub batches_failed: u64,
    /// Produce requests sent.
    pub requests: u64,
    /// Units of batches sent again after a retriable failure.
    pub retries: u64,
    /// Memory charged by batches not yet acknowledged.
    pub buffered_bytes: usize,
}

#[derive(Default)]
struct Counters {
    records: Cell<u64>,
    batches_acked: Cell<u64>,
    batches_failed: Cell<u64>,
    requests: Cell<u64>,
    retries: Cell<u64>,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

struct State {
    acc: Accumulator<Rc<BatchState>>,
    partitioner: Partitioner,
    closed: bool,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    /// Batch bytes per request at most.
    request_bytes_max: usize,
    state: RefCell<State>,
    /// Something may be sendable: a batch sealed or opened, a unit completed, a flush.
    wake: Event,
    /// Buffer memory was freed.
    room: Event,
    /// A unit completed.
    done: Event,
    counters: Counters,
    wall_clock: WallClock,
    /// With acks none: the connection the last produce to each address went over. The broker
    /// answers no acks=0 produce, not even a failed one; it closes the connection instead.
    unanswered_on: RefCell<HashMap<SocketAddr, Connection>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sender is gone: whatever was never sent fails rather than hangs.
        let handles = self.state.get_mut().acc.abort();
        for h in handles {
            h.resolve(Err(ClientError::Closed { what: "producer" }));
        }
    }
}

/// Sends records to a Quill cluster in batches. Lives on the executor of its [`Client`].
///
/// Made by [`Client::producer`]. All methods take `&self`: share it between tasks with an
/// `Rc`. Dropping it stops sending; records not yet sent then fail with
/// [`ClientError::Closed`]. Call [`Producer::flush`] or [`Producer::close`] first.
///
/// ```no_run
/// use quill_client::{Acks, Client, ClientConfig, ProducerConfig, ProducerRecord};
///
/// glommio::LocalExecutor::default().run(async {
///     let client = Client::connect(ClientConfig::default()).await?;
///     let producer = client.producer(ProducerConfig {
///         linger_ms: 5,
///         acks: Acks::Leader,
///         ..ProducerConfig::default()
///     })?;
///     // Queue many records, then wait for all of them: they travel in a few batches.
///     let mut deliveries = Vec::new();
///     for i in 0..1000 {
///         let record = ProducerRecord::new("events", format!("event {i}")).with_key("user-1");
///         deliveries.push(producer.send(record).await?);
///     }
///     for d in deliveries {
///         let meta = d.await?;
///         assert!(meta.offset >= 0);
///     }
///     producer.close().await?;
///     Ok::<(), quill_client::ClientError>(())
/// })
/// .unwrap();
/// ```
pub struct Producer {
    inner: Rc<Inner>,
    _sender: Task<()>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long a wall-clock reading serves as the anchor of [`WallClock`].
const WALL_CLOCK_ANCHOR_MAX: Duration = Duration::from_secs(1);

/// Record timestamps (ms since the Unix epoch) derived from the monotonic clock reading `send`
/// takes anyway: the wall clock is read at most once per `WALL_CLOCK_ANCHOR_MAX` and the
/// monotonic time since that reading is added. The two clocks drift apart by well under a
/// millisecond in that time (NTP slews at most 0.05%), so this saves a clock read per record.
#[derive(Default)]
struct WallClock {
    anchor: Cell<Option<(Instant, i64)>>,
}

impl WallClock {
    fn ms_at(&self, now: Instant) -> i64 {
        if let Some((at, ms)) = self.anchor.get() {
            let since = now.saturating_duration_since(at);
            if since < WALL_CLOCK_ANCHOR_MAX {
                return ms + since.as_millis() as i64;
            }
        }
        let ms = now_ms();
        self.anchor.set(Some((now, ms)));
        ms
    }
}

impl Client {
    /// A producer sharing this client's connections. See [`Producer`].
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer, ClientError> {
        Producer::new(self.clone(), config)
    }
}

impl Producer {
    pub(crate) fn new(client: Client, config: ProducerConfig) -> Result<Producer, ClientError> {
        config.validate()?;
        let limits = client.broker_limits();
        let batch_bytes_max = match limits.batch_bytes_max {
            0 => 1 << 20,
            n => n as usize,
        };
        let frame_bytes_max = match limits.frame_bytes_max {
            0 => 16 << 20,
            n => n as usize,
        };
        let request_bytes_max = frame_bytes_max
            .saturating_sub(REQUEST_OVERHEAD_BYTES)
            .max(batch_bytes_max);
        let batch_bytes = config.batch_bytes.min(batch_bytes_max);
        let acc = Accumulator::new(AccumulatorConfig {
            batch_bytes,
            batch_bytes_max,
            linger: Duration::from_millis(config.linger_ms),
            buffer_bytes_max: config.buffer_bytes_max.max(batch_bytes),
            partition_inflight_max: config.partition_inflight_requests_max as usize,
            unit_bytes_max: request_bytes_max.min(UNIT_BYTES_MAX),
        });
        // Producers started together begin their sticky rotation at different partitions.
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let inner = Rc::new(Inner {
            client,
            config,
            request_bytes_max,
            state: RefCell::new(State {
                acc,
                partitioner: Partitioner::new(batch_bytes, start),
                closed: false,
            }),
            wake: Event::new(),
            room: Event::new(),
            done: Event::new(),
            counters: Counters::default(),
            wall_clock: WallClock::default(),
            unanswered_on: RefCell::new(HashMap::new()),
        });
        let sender = glommio::spawn_local(run_sender(inner.clone()));
        Ok(Producer {
            inner,
            _sender: sender,
        })
    }

    /// Queues `record` and returns its [`Delivery`] future. Waits while the producer's
    /// buffer (`buffer_bytes_max`) is full, and on the first record of a topic for its
    /// metadata. Fails at once for a topic that does not exist, a partition it does not have,
    /// a negative timestamp, or a record larger than the broker's `batch_bytes_max`.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery, ClientError> {
        let inner = &self.inner;
        // One clock read serves the timestamp, the metadata check and the batch's linger, unless
        // this call waits (for metadata or buffer room): the linger is then timed from after
        // the wait, not from before it.
        let mut now = Instant::now();
        let timestamp_ms = match record.timestamp_ms {
            None => inner.wall_clock.ms_at(now),
            Some(t) if t >= 0 => t,
            Some(t) => {
                return Err(ClientError::InvalidArgument {
                    what: "record timestamp",
                    reason: format!("{t} is negative; timestamps are ms since the Unix epoch"),
                })
            }
        };
        let partitions = match inner.client.cached_partition_count(&record.topic, now) {
            Some(n) => n,
            None => {
                let n = inner.client.topic(&record.topic).await?.partition_count();
                now = Instant::now();
                n
            }
        };
        let partition = match record.partition {
            Some(p) if p < partitions => Some(p),
            Some(p) => {
                return Err(ClientError::UnknownPartition {
                    topic: record.topic.to_string(),
                    partition: p,
                    partitions,
                })
            }
            None => None,
        };
        let r = RecordRef {
            timestamp_ms,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
        };
        let record_bytes = record.key.as_ref().map_or(0, |k| k.len())
            + record.value.as_ref().map_or(0, |v| v.len());
        // An unkeyed record's partition is sticky: it may move on once, when the partition's
        // open batch is full (KIP-480).
        let mut sticky = partition.is_none() && record.key.is_none();
        let mut partition = match partition {
            Some(p) => p,
            None => inner.state.borrow_mut().partitioner.partition(
                &record.topic,
                record.key.as_deref(),
                partitions,
                record_bytes,
            ),
        };
        loop {
            let room = inner.room.listen();
            let appended = {
                let mut st = inner.state.borrow_mut();
                if st.closed {
                    return Err(ClientError::Closed { what: "producer" });
                }
                let handle = || Rc::new(BatchState::new(record.topic.clone(), partition));
                if sticky {
                    st.acc
                        .append_unless_full(&record.topic, partition, r, now, handle)
                } else {
                    st.acc.append(&record.topic, partition, r, now, handle)
                }
            };
            match appended {
                Ok(a) => {
                    if a.wake_sender {
                        inner.wake.notify();
                    }
                    bump(&inner.counters.records, 1);
                    return Ok(Delivery {
                        batch: a.handle,
                        index: a.index,
                        timestamp_ms,
                    });
                }
                Err(AppendError::BatchFull) => {
                    // The full batch goes now, as one that reached batch_bytes would have; the
                    // record starts the next partition's turn.
                    inner.wake.notify();
                    partition = inner.state.borrow_mut().partitioner.batch_full(
                        &record.topic,
                        partition,
                        partitions,
                        record_bytes,
                    );
                    sticky = false;
                }
                Err(AppendError::BufferFull) => {
                    inner.wake.notify();
                    room.await;
                    now = Instant::now();
                }
                Err(AppendError::TooLarge { bytes, max }) => {
                    return Err(ClientError::RecordTooLarge { bytes, max })
                }
            }
        }
    }

    /// Sends `record` and waits for its delivery.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ClientError> {
        self.send(record).await?.await
    }

    /// Sends every record queued so far at once (ignoring `linger_ms`) and waits until each
    /// was acknowledged or failed. Failures are reported by the records' deliveries, not here.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let upto = self.inner.state.borrow_mut().acc.flush_begin();
        self.inner.wake.notify();
        loop {
            let done = self.inner.done.listen();
            if self.inner.state.borrow().acc.is_flushed(upto) {
                return Ok(());
            }
            done.await;
        }
    }

    /// Flushes, then refuses further sends and stops the sender.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        self.inner.state.borrow_mut().closed = true;
        Ok(())
    }

    /// Counters since the producer was created.
    pub fn stats(&self) -> ProducerStats {
        let c = &self.inner.counters;
        ProducerStats {
            records: c.records.get(),
            batches_acked: c.batches_acked.get(),
            batches_failed: c.batches_failed.get(),
            requests: c.requests.get(),
            retries: c.retries.get(),
            buffered_bytes: self.inner.state.borrow().acc.buffered_bytes(),
        }
    }
}

type ProduceUnit = Unit<Rc<BatchState>>;

async fn run_sender(inner: Rc<Inner>) {
    let mut units = Vec::new();
    loop {
        let wake = inner.wake.listen();
        let now = Instant::now();
        let next = inner.state.borrow_mut().acc.drain(now, &mut units);
        if !units.is_empty() {
            dispatch(&inner, &mut units, now);
        }
        match next {
            Some(t) if t <= now => futures_lite::future::yield_now().await,
            Some(t) => {
                futures_lite::future::or(wake, glommio::timer::sleep(t - now)).await;
            }
            None => wake.await,
        }
    }
}

/// Groups drained units by destination and starts one produce task per request.
fn dispatch(inner: &Rc<Inner>, units: &mut Vec<ProduceUnit>, now: Instant) {
    let mut by_addr: Vec<(SocketAddr, Vec<ProduceUnit>)> = Vec::new();
    let mut failed_here = false;
    for unit in units.drain(..) {
        let route = inner.client.route(&unit.topic, unit.partition);
        failed_here |= !matches!(route, Route::To(_));
        match route {
            Route::To(addr) => match by_addr.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, v)) => v.push(unit),
                None => by_addr.push((addr, vec![unit])),
            },
            Route::Unknown => {
                inner.client.refresh_in_background(&unit.topic);
                let error = ClientError::Broker {
                    code: ErrorCode::LeaderNotAvailable,
                    message: Some("no leader known yet".to_string()),
                    context: format!("produce to {}-{}", unit.topic, unit.partition),
                };
                unit_failed(inner, unit, error, true, now);
            }
            Route::NoTopic => {
                let error = ClientError::UnknownTopic {
                    topic: unit.topic.to_string(),
                };
                unit_failed(inner, unit, error, false, now);
            }
            Route::NoPartition { partitions } => {
                let error = ClientError::UnknownPartition {
                    topic: unit.topic.to_string(),
                    partition: unit.partition,
                    partitions,
                };
                unit_failed(inner, unit, error, false, now);
            }
        }
    }
    if failed_here {
        // Units failed (or went back for a retry) without a request: wake whoever waits for
        // a completion (flush) or for buffer room, as a response would have.
        inner.room.notify();
        inner.done.notify();
    }
    for (addr, mut group) in by_addr {
        // Request order must be topic by topic (the response mirrors it).
        group.sort_by(|a, b| a.topic.cmp(&b.topic));
        let mut request: Vec<ProduceUnit> = Vec::new();
        let mut bytes = 0usize;
        for unit in group {
            let len = unit.records.len() + unit.topic.len() + 16;
            if !request.is_empty() && bytes + len > inner.request_bytes_max {
                let full = std::mem::take(&mut request);
                glommio::spawn_local(produce(inner.clone(), addr, full)).detach();
                bytes = 0;
            }
            bytes += len;
            request.push(unit);
        }
        if !request.is_empty() {
            glommio::spawn_local(produce(inner.clone(), addr, request)).detach();
        }
    }
}

/// Resolves every batch of a unit that succeeded; `base_offsets` has one per batch, or is
/// `None` with acks none.
fn unit_succeeded(inner: &Inner, unit: ProduceUnit, base_offsets: Option<&[i64]>) {
    let batches: Vec<SealedBatch<Rc<BatchState>>> = inner.state.borrow_mut().acc.complete(unit);
    bump(&inner.counters.batches_acked, batches.len() as u64);
    for (i, b) in batches.iter().enumerate() {
        b.handle
            .resolve(Ok(base_offsets.map_or(-1, |offsets| offsets[i])));
    }
}

/// Retries the unit if the failure is retriable and attempts remain; else fails its records.
fn unit_failed(
    inner: &Inner,
    unit: ProduceUnit,
    error: ClientError,
    retriable: bool,
    now: Instant,
) {
    let policy = RetryPolicy {
        retries_max: inner.client.config().retries_max,
        backoff: inner.client.retry_backoff(),
        delivery_timeout: Duration::from_millis(inner.config.delivery_timeout_ms),
    };
    let verdict = retry::decide(
        &policy,
        &error,
        retriable,
        unit.counted_retries,
        unit.created,
        now,
    );
    let error = match verdict {
        Verdict::Retry {
            not_before,
            refresh,
            counted,
        } => {
            if refresh {
                // The leader may have moved, or the topic gone.
                inner.client.refresh_in_background(&unit.topic);
            }
            tracing::debug!(topic = %unit.topic, partition = unit.partition, attempts = unit.attempts, %error, "retrying a produce");
            bump(&inner.counters.retries, 1);
            inner
                .state
                .borrow_mut()
                .acc
                .retry(unit, not_before, counted);
            return;
        }
        Verdict::GiveUp => {
            // A broker that stopped answering may no longer lead (a paused or partitioned
            // leader): the next records go where a fresh answer says.
            if error.is_timeout() {
                inner.client.refresh_in_background(&unit.topic);
            }
            error
        }
        Verdict::TimedOut => ClientError::DeliveryTimedOut {
            topic: unit.topic.to_string(),
            partition: unit.partition,
            timeout_ms: inner.config.delivery_timeout_ms,
            attempts: unit.attempts + 1,
            last: Box::new(error),
        },
    };
    let batches = inner.state.borrow_mut().acc.complete(unit);
    bump(&inner.counters.batches_failed, batches.len() as u64);
    for b in batches {
        b.handle.resolve(Err(error.clone()));
    }
}

/// With acks none, whether the connection earlier produces to `addr` went over was closed
/// since (`conn` is its replacement): the broker closes it when an acks=0 produce fails, for
/// example because the topic was deleted. The error sends these units back for a retry after
/// a metadata refresh, so records for a topic that is gone fail instead of being written to
/// a broker that drops them.
fn broker_closed_unanswered(
    inner: &Inner,
    addr: SocketAddr,
    conn: &Connection,
) -> Option<ClientError> {
    let previous = inner.unanswered_on.borrow_mut().insert(addr, conn.clone());
    match previous {
        Some(p) if !p.is_open() && !p.is_same(conn) => Some(ClientError::ConnectionLost {
            addr: addr.to_string(),
            reason: "the broker closed the connection earlier acks=0 produces went over \
                     (it does so when one fails)"
                .to_string(),
        }),
        _ => None,
    }
}

/// One Produce request to `addr` carrying `units`, and the handling of its outcome.
async fn produce(inner: Rc<Inner>, addr: SocketAddr, mut units: Vec<ProduceUnit>) {
    let acks = inner.config.acks;
    let timeout = inner.client.request_timeout();
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for u in units.iter_mut() {
        let part = ProducePartition {
            partition: u.partition,
            records: std::mem::take(&mut u.records),
        };
        match topics.last_mut() {
            Some(t) if t.name == *u.topic => t.partitions.push(part),
            _ => topics.push(ProduceTopic {
                name: u.topic.to_string(),
                partitions: vec![part],
            }),
        }
    }
    let request = Request::Produce(ProduceRequest {
        // Version 1: acks all, and leader hints in the answer.
        version: 1,
        acks,
        timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        topics,
    });
    bump(&inner.counters.requests, 1);
    let outcome = match inner.client.connection(addr).await {
        Err(e) => Err(e),
        Ok(conn) => match acks {
            Acks::None => match broker_closed_unanswered(&inner, addr, &conn) {
                Some(error) => Err(error),
                None => conn.send_unanswered(&request, timeout).await.map(|()| None),
            },
            Acks::Leader | Acks::All => {
                conn.call(&request, timeout + PRODUCE_GRACE).await.map(Some)
            }
        },
    };
    // Take the batches back: a retry sends them again.
    let Request::Produce(sent) = request else {
        unreachable!("built as a produce")
    };
    let mut records = sent
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| p.records);
    for u in units.iter_mut() {
        u.records = records.next().expect("one partition entry per unit");
    }
    let now = Instant::now();
    match outcome {
        Ok(None) => {
            for u in units {
                unit_succeeded(&inner, u, None);
            }
        }
        Ok(Some(Response::Produce(response))) => {
            let parts: Vec<_> = response
                .topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name;
                    t.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect();
            if parts.len() != units.len() {
                let error = ClientError::Protocol {
                    addr: addr.to_string(),
                    reason: format!(
                        "a produce of {} partitions was answered for {}",
                        units.len(),
                        parts.len()
                    ),
                };
                for u in units {
                    unit_failed(&inner, u, error.clone(), false, now);
                }
            } else {
                for (u, (name, p)) in units.into_iter().zip(parts) {
                    let context = || format!("produce to {}-{}", u.topic, u.partition);
                    if name != *u.topic || p.partition != u.partition {
                        let error = ClientError::Protocol {
                            addr: addr.to_string(),
                            reason: format!(
                                "produce answered for {name}-{} where {} was sent",
                                p.partition,
                                context()
                            ),
                        };
                        unit_failed(&inner, u, error, false, now);
                    } else if p.error_code.is_none() {
                        if p.base_offsets.len() == u.batches.len() {
                            unit_succeeded(&inner, u, Some(&p.base_offsets));
                        } else {
                            let error = ClientError::Protocol {
                                addr: addr.to_string(),
                                reason: format!(
                                    "{} batches acknowledged with {} base offsets",
                                    u.batches.len(),
                                    p.base_offsets.len()
                                ),
                            };
                            unit_failed(&inner, u, error, false, now);
                        }
                    } else {
                        if p.error_code == ErrorCode::NotLeader {
                            // Route the retry to the hinted leader at once when the hint is
                            // newer than the cache; the refresh confirms it either way.
                            inner
                                .client
                                .apply_leader_hint(&u.topic, u.partition, p.leader);
                        }
                        let retriable = p.error_code.is_retriable();
                        // A topic deleted meanwhile is reported as such; anything else
                        // keeps the broker's code and message.
                        let error = if p.error_code == ErrorCode::UnknownTopicOrPartition
                            && inner.client.route(&u.topic, u.partition) == Route::NoTopic
                        {
                            ClientError::UnknownTopic {
                                topic: u.topic.to_string(),
                            }
                        } else {
                            ClientError::Broker {
                                code: p.error_code,
                                message: p.error_message,
                                context: context(),
                            }
                        };
                        unit_failed(&inner, u, error, retriable, now);
                    }
                }
            }
        }
        Ok(Some(Response::Error { code, message })) => {
            let error = ClientError::Broker {
                code,
                message,
                context: format!("produce to {addr}"),
            };
            for u in units {
                unit_failed(&inner, u, error.clone(), code.is_retriable(), now);
            }
        }
        Ok(Some(other)) => {
            let error = ClientError::Protocol {
                addr: addr.to_string(),
                reason: format!("Produce answered with {:?}", other.api_key()),
            };
            for u in units {
                unit_failed(&inner, u, error.clone(), false, now);
            }
        }
        Err(error) => {
            let retriable = error.is_retriable();
            for u in units {
                unit_failed(&inner, u, error.clone(), retriable, now);
            }
        }
    }
    inner.wake.notify();
    inner.room.notify();
    inner.done.notify();
}

#[cfg(test)]
mod tests;
