//! Drives one workload: harness executors (one pinned glommio thread each) running producer and
//! consumer tasks on the async client, shared counters for the live progress line, and the
//! per-executor histograms merged at the end.
//!
//! Lives on: the `Shared` counters are shared by every executor thread (atomics only); each
//! `ExecStats` lives on one executor and is returned by value when it finishes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use quill::local::Event;
use quill_client::{
    Client, ClientConfig, ConsumerConfig, Delivery, ProducerConfig, ProducerRecord, StartOffset,
};

use super::spec::WorkloadSpec;
use crate::error::{Context, PerfError, Result};
use crate::report::{latency_histogram, record_latency};

/// Deliveries queued per partition for the task that waits for them; `send` waits beyond it.
const PENDING_DELIVERIES_MAX: usize = 1 << 16;
/// How long consumers may take after the end to catch up with what was acknowledged.
const DRAIN_MS_MAX: u64 = 10_000;

/// Counters every executor adds to; read by the progress printer.
pub struct Shared {
    pub start: Instant,
    pub warm_end: Instant,
    pub end: Instant,
    pub acked: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub consumed: AtomicU64,
    pub send_errors: AtomicU64,
    pub producers_done: AtomicU64,
    pub consumers_stop: AtomicBool,
    /// p99 publish latency of the last second, per executor, in µs.
    pub p99_last_us: Vec<AtomicU64>,
}

/// What one executor measured inside the measured window.
pub struct ExecStats {
    pub publish: Histogram<u64>,
    pub publish_intended: Histogram<u64>,
    pub publish_delay: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub acked: u64,
    pub acked_bytes: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub send_errors: u64,
    pub sent_total: u64,
    pub acked_total: u64,
    pub consumed_total: u64,
    /// Progress histogram, reset every second.
    interval: Histogram<u64>,
}

impl ExecStats {
    fn new() -> Self {
        ExecStats {
            publish: latency_histogram(),
            publish_intended: latency_histogram(),
            publish_delay: latency_histogram(),
            e2e: latency_histogram(),
            acked: 0,
            acked_bytes: 0,
            consumed: 0,
            consumed_bytes: 0,
            send_errors: 0,
            sent_total: 0,
            acked_total: 0,
            consumed_total: 0,
            interval: latency_histogram(),
        }
    }

    pub fn merge(&mut self, o: &ExecStats) {
        let _ = self.publish.add(&o.publish);
        let _ = self.publish_intended.add(&o.publish_intended);
        let _ = self.publish_delay.add(&o.publish_delay);
        let _ = self.e2e.add(&o.e2e);
        self.acked += o.acked;
        self.acked_bytes += o.acked_bytes;
        self.consumed += o.consumed;
        self.consumed_bytes += o.consumed_bytes;
        self.send_errors += o.send_errors;
        self.sent_total += o.sent_total;
        self.acked_total += o.acked_total;
        self.consumed_total += o.consumed_total;
    }

    pub fn empty() -> Self {
        Self::new()
    }
}

/// Names of the workload's topics, unique per run.
pub fn topic_names(spec: &WorkloadSpec) -> Vec<String> {
    let tag = format!("{}-{}", std::process::id(), now_unix_ms() % 1_000_000);
    (0..spec.topics)
        .map(|t| format!("perf-{t}-{tag}"))
        .collect()
}

fn now_unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Creates the topics, on a short-lived executor on `cpu`.
pub fn create_topics(
    bootstrap: &str,
    spec: &WorkloadSpec,
    topics: &[String],
    cpu: usize,
) -> Result<()> {
    let durability = spec.durability()?;
    crate::run_on_cpu(cpu, async {
        let client = Client::connect(ClientConfig::new(bootstrap))
            .await
            .with_context(|| format!("connect to {bootstrap}"))?;
        for t in topics {
            client
                .admin()
                .create_topic(
                    quill_client::NewTopic::new(t.clone(), spec.partitions_per_topic)
                        .durability(durability)
                        .replication_factor(spec.replication_factor),
                )
                .await
                .with_context(|| format!("create topic {t}"))?;
        }
        Ok(())
    })
}

/// Starts one executor thread per CPU of `cpus`; returns their join handles.
pub fn spawn_executors(
    bootstrap: String,
    spec: Arc<WorkloadSpec>,
    topics: Arc<Vec<String>>,
    cpus: &[usize],
    shared: Arc<Shared>,
) -> Result<Vec<glommio::ExecutorJoinHandle<Result<ExecStats>>>> {
    let n = cpus.len();
    let mut handles = Vec::new();
    for (i, &cpu) in cpus.iter().enumerate() {
        let (b, s, t, sh) = (
            bootstrap.clone(),
            spec.clone(),
            topics.clone(),
            shared.clone(),
        );
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("quill-perf-{i}"))
            .io_memory(crate::IO_MEMORY_BYTES)
            .spawn(move || async move { run_executor(i, n, b, s, t, sh).await })
            .with_context(|| format!("start harness executor on CPU {cpu}"))?;
        handles.push(h);
    }
    Ok(handles)
}

async fn run_executor(
    index: usize,
    executors: usize,
    bootstrap: String,
    spec: Arc<WorkloadSpec>,
    topics: Arc<Vec<String>>,
    shared: Arc<Shared>,
) -> Result<ExecStats> {
    let client = Client::connect(ClientConfig::new(bootstrap.as_str()))
        .await
        .with_context(|| format!("connect to {bootstrap}"))?;
    let stats = Rc::new(RefCell::new(ExecStats::new()));
    let mut tasks = Vec::new();

    // Consumers first, from the start of the fresh topics, so they see every record.
    let mut pairs = Vec::new();
    for t in topics.iter() {
        for p in 0..spec.partitions_per_topic {
            pairs.push((t.clone(), p));
        }
    }
    let mut consumer_tasks = Vec::new();
    for c in (0..spec.consumers as usize).filter(|c| c % executors == index) {
        let mine: Vec<(String, u32)> = pairs
            .iter()
            .enumerate()
            .filter(|(k, _)| k % spec.consumers as usize == c)
            .map(|(_, x)| x.clone())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut ccfg = ConsumerConfig::default();
        if let Some(b) = spec.partition_fetch_bytes_max {
            ccfg.partition_fetch_bytes_max = b;
        }
        let consumer = client.consumer(ccfg).context("create consumer")?;
        for t in topics.iter() {
            let parts: Vec<u32> = mine
                .iter()
                .filter(|(tt, _)| tt == t)
                .map(|(_, p)| *p)
                .collect();
            if !parts.is_empty() {
                consumer
                    .assign(t, Some(parts), StartOffset::Earliest)
                    .await
                    .with_context(|| format!("assign {t}"))?;
            }
        }
        consumer_tasks.push(glommio::spawn_local(consume(
            consumer,
            shared.clone(),
            stats.clone(),
        )));
    }

    let rate_per_producer = spec.rate_msgs_per_s as f64 / f64::from(spec.producers);
    let payload = Bytes::from(
        (0..spec.message_bytes)
            .map(|i| (i as u8).wrapping_mul(31))
            .collect::<Vec<u8>>(),
    );
    for p in (0..spec.producers as usize).filter(|p| p % executors == index) {
        let defaults = ProducerConfig::default();
        let producer = client
            .producer(ProducerConfig {
                linger_ms: spec.linger_ms,
                batch_bytes: spec.batch_bytes,
                acks: spec.acks()?,
                partition_inflight_requests_max: spec
                    .partition_inflight_requests_max
                    .unwrap_or(defaults.partition_inflight_requests_max),
                buffer_bytes_max: spec.buffer_bytes_max.unwrap_or(defaults.buffer_bytes_max),
                delivery_timeout_ms: defaults.delivery_timeout_ms,
            })
            .context("create producer")?;
        let topic: Arc<str> = Arc::from(topics[p % topics.len()].as_str());
        tasks.push(glommio::spawn_local(produce(
            producer,
            topic,
            spec.partitions_per_topic,
            rate_per_producer,
            payload.clone(),
            shared.clone(),
            stats.clone(),
        )));
    }
    let progress = glommio::spawn_local(progress(index, shared.clone(), stats.clone()));
    let mut first_err = None;
    for t in tasks {
        if let Err(e) = t.await {
            first_err.get_or_insert(e);
        }
        shared.producers_done.fetch_add(1, Ordering::SeqCst);
    }
    for t in consumer_tasks {
        if let Err(e) = t.await {
            first_err.get_or_insert(e);
        }
    }
    drop(progress.cancel());
    if let Some(e) = first_err {
        return Err(e);
    }
    let s = std::mem::replace(&mut *stats.borrow_mut(), ExecStats::new());
    Ok(s)
}

/// Every second, publishes the p99 publish latency of the last second for the progress line.
async fn progress(index: usize, shared: Arc<Shared>, stats: Rc<RefCell<ExecStats>>) {
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let mut s = stats.borrow_mut();
        let p99 = if s.interval.is_empty() {
            0
        } else {
            s.interval.value_at_quantile(0.99)
        };
        s.interval.reset();
        shared.p99_last_us[index].store(p99, Ordering::Relaxed);
    }
}

/// A record sent and not yet known to be acknowledged.
struct Pending {
    delivery: Delivery,
    sent: Instant,
    intended: Instant,
}

/// The records of one partition in send order, for the task that records their acknowledgements.
/// A plain queue rather than a channel: the producer pushes per record, the waiter wakes once per
/// acknowledged batch (all records of a batch resolve together) and drains it.
#[derive(Default)]
struct AckQueue {
    pending: RefCell<VecDeque<Pending>>,
    /// Notified when the queue goes from empty to non-empty, and when the producer is done.
    arrived: Event,
    /// Notified when the queue shrinks below `PENDING_DELIVERIES_MAX`.
    room: Event,
    closed: Cell<bool>,
}

/// Below this the producer sleeps until the next intended send time; the ones due meanwhile are
/// sent in a burst when it wakes (each still stamped with its own send time), so a high target
/// rate does not cost a timer per record. The pacing error shows as publish delay.
const PACING_SLEEP_MIN: Duration = Duration::from_micros(100);
/// Values are cut from slabs of this size, so a record's value costs no allocation of its own.
const VALUE_SLAB_BYTES: usize = 1 << 20;

/// Sends on the rate schedule (or as fast as `send` admits), stamping each value with the send
/// time in ns since `shared.start`; one waiter task per partition records acknowledgements.
async fn produce(
    producer: quill_client::Producer,
    topic: Arc<str>,
    partitions: u32,
    rate_per_s: f64,
    payload: Bytes,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ExecStats>>,
) -> Result<()> {
    let queues: Vec<Rc<AckQueue>> = (0..partitions)
        .map(|_| Rc::new(AckQueue::default()))
        .collect();
    let waiters: Vec<_> = queues
        .iter()
        .map(|q| {
            glommio::spawn_local(await_acks(
                q.clone(),
                payload.len() as u64,
                shared.clone(),
                stats.clone(),
            ))
        })
        .collect();
    let interval = if rate_per_s > 0.0 {
        Some(Duration::from_secs_f64(1.0 / rate_per_s))
    } else {
        None
    };
    let start = shared.start;
    let mut slab = BytesMut::new();
    let mut i: u32 = 0;
    let mut result = Ok(());
    loop {
        let intended = match interval {
            Some(iv) => start + iv * i,
            None => Instant::now(),
        };
        if intended >= shared.end {
            break;
        }
        i = i.wrapping_add(1);
        if interval.is_some() {
            let now = Instant::now();
            if intended > now {
                glommio::timer::sleep((intended - now).max(PACING_SLEEP_MIN)).await;
            }
        }
        let sent = Instant::now();
        if sent >= shared.end {
            break;
        }
        if slab.capacity() < payload.len() {
            slab.reserve(VALUE_SLAB_BYTES.max(payload.len()));
        }
        slab.put_u64_le(sent.duration_since(start).as_nanos() as u64);
        slab.extend_from_slice(&payload[8..]);
        let record = ProducerRecord::new(topic.clone(), slab.split().freeze());
        match producer.send(record).await {
            Ok(delivery) => {
                stats.borrow_mut().sent_total += 1;
                let q = &queues[delivery.partition() as usize];
                while q.pending.borrow().len() >= PENDING_DELIVERIES_MAX {
                    q.room.listen().await;
                }
                let mut pending = q.pending.borrow_mut();
                pending.push_back(Pending {
                    delivery,
                    sent,
                    intended,
                });
                if pending.len() == 1 {
                    q.arrived.notify();
                }
            }
            Err(e) => {
                stats.borrow_mut().send_errors += 1;
                shared.send_errors.fetch_add(1, Ordering::Relaxed);
                result = Err(PerfError::new("send", e));
                break;
            }
        }
        glommio::yield_if_needed().await;
    }
    let flushed = producer.flush().await;
    for q in &queues {
        q.closed.set(true);
        q.arrived.notify();
    }
    for w in waiters {
        w.await;
    }
    result?;
    flushed.context("flush producer")
}

/// Records the acknowledgement of every record of one partition, in send order: awaits the
/// oldest, then takes every following one already resolved (the rest of its batch) with the
/// same acknowledgement time.
async fn await_acks(
    queue: Rc<AckQueue>,
    value_bytes: u64,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ExecStats>>,
) {
    loop {
        let listen = queue.arrived.listen();
        let first = queue.pending.borrow_mut().pop_front();
        let Some(mut first) = first else {
            if queue.closed.get() {
                return;
            }
            listen.await;
            continue;
        };
        let ok = (&mut first.delivery).await.is_ok();
        let now = Instant::now();
        let mut s = stats.borrow_mut();
        let (acked_before, errors_before) = (s.acked_total, s.send_errors);
        record_ack(&mut s, &shared, &first, ok, now, value_bytes);
        let mut pending = queue.pending.borrow_mut();
        while let Some(ok) = pending.front().and_then(|p| p.delivery.delivered()) {
            let p = pending.pop_front().expect("checked");
            record_ack(&mut s, &shared, &p, ok, now, value_bytes);
        }
        if pending.len() < PENDING_DELIVERIES_MAX {
            queue.room.notify();
        }
        // The counters every executor shares are updated once per batch, not per record.
        let acked = s.acked_total - acked_before;
        shared.acked.fetch_add(acked, Ordering::Relaxed);
        shared
            .acked_bytes
            .fetch_add(acked * value_bytes, Ordering::Relaxed);
        let errors = s.send_errors - errors_before;
        if errors > 0 {
            shared.send_errors.fetch_add(errors, Ordering::Relaxed);
        }
    }
}

/// Records one acknowledgement in the executor's own stats (the shared counters are the
/// caller's).
fn record_ack(
    s: &mut ExecStats,
    shared: &Shared,
    p: &Pending,
    ok: bool,
    now: Instant,
    value_bytes: u64,
) {
    if !ok {
        s.send_errors += 1;
        return;
    }
    s.acked_total += 1;
    record_latency(&mut s.interval, now - p.sent);
    if p.sent >= shared.warm_end && p.sent < shared.end {
        s.acked += 1;
        s.acked_bytes += value_bytes;
        record_latency(&mut s.publish, now - p.sent);
        record_latency(&mut s.publish_intended, now - p.intended);
        record_latency(&mut s.publish_delay, p.sent - p.intended);
    }
}

/// Polls until told to stop, recording end-to-end latency from the embedded send time.
async fn consume(
    consumer: quill_client::Consumer,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ExecStats>>,
) -> Result<()> {
    let start = shared.start;
    let warm_ns = shared.warm_end.duration_since(start).as_nanos() as u64;
    let end_ns = shared.end.duration_since(start).as_nanos() as u64;
    while !shared.consumers_stop.load(Ordering::Relaxed) {
        let records = consumer
            .poll(Duration::from_millis(100))
            .await
            .context("poll")?;
        let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
        let mut s = stats.borrow_mut();
        for r in &records {
            let Some(v) = r.value.as_ref() else { continue };
            if v.len() < 8 {
                continue;
            }
            let sent_ns = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
            s.consumed_total += 1;
            if sent_ns >= warm_ns && sent_ns < end_ns {
                s.consumed += 1;
                s.consumed_bytes += v.len() as u64;
                record_latency(
                    &mut s.e2e,
                    Duration::from_nanos(now_ns.saturating_sub(sent_ns)),
                );
            }
        }
        shared
            .consumed
            .fetch_add(records.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Longest the consumers may lag once producers are done.
pub fn drain_deadline(end: Instant) -> Instant {
    end + Duration::from_millis(DRAIN_MS_MAX)
}
