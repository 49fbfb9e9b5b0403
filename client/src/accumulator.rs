//! Grouping a producer's records into Kafka v2 batches per partition, without I/O.
//!
//! [`Accumulator::append`] encodes each record straight into the open batch of its partition
//! (a [`BatchBuilder`]): the record's bytes are copied once, into the batch that goes on the
//! wire. A batch is sealed when the next record would take it past `batch_bytes`, and becomes
//! sendable when sealed or once its first record is `linger` old. [`Accumulator::drain`] hands
//! out, for each partition with fewer than `partition_inflight_max` requests in flight, its
//! sendable batches as one [`Unit`] (several batches back to back, up to `unit_bytes_max`). The
//! driver reports each unit's fate: [`Accumulator::complete`] or [`Accumulator::retry`].
//!
//! Memory is bounded: each batch charges its capacity (at least `batch_bytes`) against
//! `buffer_bytes_max` from its first record until its unit completes; past the bound `append`
//! refuses with [`AppendError::BufferFull`] and the producer waits.
//!
//! Each batch carries a handle `B` chosen by the driver (the producer's shared delivery state);
//! a record's delivery is its batch's handle plus its index in the batch, so records themselves
//! allocate nothing. Time is an argument, so tests drive the accumulator without a clock.

use std::collections::{BTreeSet, VecDeque};

use ahash::AHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::records::Header;
use quill_proto::record::{varint_len, varlong_len, BatchBuilder, BATCH_HEADER_BYTES};

/// Headers passed to the batch builder without a heap allocation, up to this many.
const STACK_HEADERS_MAX: usize = 8;

/// The accumulator's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccumulatorConfig {
    /// Seal a batch when the next record would take it past this size.
    pub(crate) batch_bytes: usize,
    /// No batch may exceed this size (the broker's `batch_bytes_max`).
    pub(crate) batch_bytes_max: usize,
    /// How long a batch waits for more records, from its first.
    pub(crate) linger: Duration,
    /// Capacity of all batches not yet acknowledged.
    pub(crate) buffer_bytes_max: usize,
    /// Units in flight per partition.
    pub(crate) partition_inflight_max: usize,
    /// Most bytes of batches in one unit (a batch larger than this travels alone).
    pub(crate) unit_bytes_max: usize,
}

/// A record as the accumulator sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordRef<'a> {
    pub(crate) timestamp_ms: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: &'a [Header],
}

/// Why a record was not appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppendError {
    /// `buffer_bytes_max` is reached; wait for units to complete.
    BufferFull,
    /// Even alone in a batch the record is over `batch_bytes_max`.
    TooLarge { bytes: usize, max: usize },
    /// From [`Accumulator::append_unless_full`]: the partition's open batch cannot take the
    /// record. That batch was sealed (sendable at once); the record was not appended.
    BatchFull,
}

/// Where an appended record is.
#[derive(Clone, Debug)]
pub(crate) struct Appended<B> {
    pub(crate) handle: B,
    /// The record's offset delta in its batch.
    pub(crate) index: u32,
    /// Something became sendable or a new linger deadline started: wake the sender.
    pub(crate) wake_sender: bool,
}

/// A sealed batch inside a unit.
#[derive(Clone, Debug)]
pub(crate) struct SealedBatch<B> {
    pub(crate) handle: B,
    pub(crate) id: u64,
}

/// The batches of one partition to send in one request: `records` holds them back to back,
/// in the order of `batches`.
#[derive(Debug)]
pub(crate) struct Unit<B> {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) records: BytesMut,
    pub(crate) batches: Vec<SealedBatch<B>>,
    /// How many times this unit was sent before and failed retriably.
    pub(crate) attempts: u32,
    /// How many of those count against `retries_max` (a leader change does not).
    pub(crate) counted_retries: u32,
    /// When its oldest batch was opened: the delivery timeout runs from here.
    pub(crate) created: Instant,
    charged: usize,
}

struct OpenBatch<B> {
    builder: BatchBuilder,
    handle: B,
    id: u64,
    base_timestamp_ms: i64,
    created: Instant,
    charged: usize,
}

struct Queued<B> {
    records: BytesMut,
    batches: Vec<SealedBatch<B>>,
    charged: usize,
    attempts: u32,
    counted_retries: u32,
    created: Instant,
    not_before: Option<Instant>,
}

struct PartitionQueue<B> {
    open: Option<OpenBatch<B>>,
    queue: VecDeque<Queued<B>>,
    inflight: usize,
}

impl<B> Default for PartitionQueue<B> {
    fn default() -> Self {
        PartitionQueue {
            open: None,
            queue: VecDeque::new(),
            inflight: 0,
        }
    }
}

/// Per-partition batches of one producer. Lives with the producer, on its executor.
pub(crate) struct Accumulator<B> {
    config: AccumulatorConfig,
    topics: AHashMap<Arc<str>, Vec<PartitionQueue<B>>>,
    buffered_bytes: usize,
    next_batch_id: u64,
    /// Ids of batches opened and not yet completed, for flush.
    incomplete: BTreeSet<u64>,
}

fn nullable_bytes(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_len(-1),
        Some(b) => varint_len(i32::try_from(b.len()).unwrap_or(i32::MAX)) + b.len(),
    }
}

/// The encoded size of a record, exactly as [`BatchBuilder::push`] will write it.
pub(crate) fn record_bytes(timestamp_delta: i64, offset_delta: i32, r: &RecordRef<'_>) -> usize {
    let mut body = 1 // attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_bytes(r.key)
        + nullable_bytes(r.value)
        + varint_len(i32::try_from(r.headers.len()).unwrap_or(i32::MAX));
    for h in r.headers {
        body = body
            .saturating_add(nullable_bytes(Some(h.key.as_bytes())))
            .saturating_add(nullable_bytes(h.value.as_deref()));
    }
    varint_len(i32::try_from(body).unwrap_or(i32::MAX)) + body
}

fn seal<B>(open: OpenBatch<B>) -> Queued<B> {
    Queued {
        records: open.builder.finish(),
        batches: vec![SealedBatch {
            handle: open.handle,
            id: open.id,
        }],
        charged: open.charged,
        attempts: 0,
        counted_retries: 0,
        created: open.created,
        not_before: None,
    }
}

fn push_record(builder: &mut BatchBuilder, r: &RecordRef<'_>) {
    if r.headers.len() <= STACK_HEADERS_MAX {
        let mut pairs: [(&[u8], Option<&[u8]>); STACK_HEADERS_MAX] =
            [(&[], None); STACK_HEADERS_MAX];
        for (slot, h) in pairs.iter_mut().zip(r.headers) {
            *slot = (h.key.as_bytes(), h.value.as_deref());
        }
        builder.push(r.timestamp_ms, r.key, r.value, &pairs[..r.headers.len()]);
    } else {
        let pairs: Vec<(&[u8], Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|h| (h.key.as_bytes(), h.value.as_deref()))
            .collect();
        builder.push(r.timestamp_ms, r.key, r.value, &pairs);
    }
}

impl<B: Clone> Accumulator<B> {
    pub(crate) fn new(config: AccumulatorConfig) -> Self {
        assert!(
            config.batch_bytes <= config.buffer_bytes_max,
            "buffer_bytes_max must hold a batch"
        );
        assert!(config.partition_inflight_max > 0);
        Accumulator {
            config,
            topics: AHashMap::new(),
            buffered_bytes: 0,
            next_batch_id: 1,
            incomplete: BTreeSet::new(),
        }
    }

    /// Bytes charged by batches not yet acknowledged.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Whether nothing is open, queued or in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.incomplete.is_empty()
    }

    fn queue_mut(&mut self, topic: &Arc<str>, partition: u32) -> &mut PartitionQueue<B> {
        if !self.topics.contains_key(&**topic) {
            self.topics.insert(topic.clone(), Vec::new());
        }
        let parts = self.topics.get_mut(&**topic).expect("inserted above");
        let at = partition as usize;
        if parts.len() <= at {
            parts.resize_with(at + 1, PartitionQueue::default);
        }
        &mut parts[at]
    }

    /// Appends a record to `topic`-`partition` at `now`; `new_handle` makes the handle of a
    /// batch when one has to be opened.
    pub(crate) fn append(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        record: RecordRef<'_>,
        now: Instant,
        new_handle: impl FnOnce() -> B,
    ) -> Result<Appended<B>, AppendError> {
        self.append_inner(topic, partition, record, now, false, new_handle)
    }

    /// [`Accumulator::append`], except that a record the partition's open batch cannot take is
    /// refused with [`AppendError::BatchFull`] (the batch sealed) instead of starting the next
    /// batch there: the sticky partitioner then moves on (Kafka's KIP-480).
    pub(crate) fn append_unless_full(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        record: RecordRef<'_>,
        now: Instant,
        new_handle: impl FnOnce() -> B,
    ) -> Result<Appended<B>, AppendError> {
        self.append_inner(topic, partition, record, now, true, new_handle)
    }

    fn append_inner(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        record: RecordRef<'_>,
        now: Instant,
        refuse_when_full: bool,
        new_handle: impl FnOnce() -> B,
    ) -> Result<Appended<B>, AppendError> {
        let batch_bytes = self.config.batch_bytes;
        let batch_bytes_max = self.config.batch_bytes_max;
        let pq = self.queue_mut(topic, partition);
        if let Some(open) = &mut pq.open {
            let size = record_bytes(
                record.timestamp_ms - open.base_timestamp_ms,
                open.builder.len() as i32,
                &record,
            );
            let used = open.builder.encoded_bytes();
            // A batch's capacity is at least batch_bytes; a batch holding one oversized
            // record has exactly that record's size and takes no more.
            if used.saturating_add(size) <= open.charged {
                let index = open.builder.len() as u32;
                push_record(&mut open.builder, &record);
                debug_assert_eq!(open.builder.encoded_bytes(), used + size);
                return Ok(Appended {
                    handle: open.handle.clone(),
                    index,
                    wake_sender: false,
                });
            }
            // It does not fit: the open batch is done.
            let sealed = seal(pq.open.take().expect("checked above"));
            pq.queue.push_back(sealed);
            if refuse_when_full {
                return Err(AppendError::BatchFull);
            }
        }
        let size = BATCH_HEADER_BYTES.saturating_add(record_bytes(0, 0, &record));
        if size > batch_bytes_max {
            return Err(AppendError::TooLarge {
                bytes: size,
                max: batch_bytes_max,
            });
        }
        let charge = size.max(batch_bytes);
        if self.buffered_bytes > 0
            && self.buffered_bytes.saturating_add(charge) > self.config.buffer_bytes_max
        {
            // Sealing above may have made a batch sendable: the caller wakes the sender.
            return Err(AppendError::BufferFull);
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        self.incomplete.insert(id);
        self.buffered_bytes += charge;
        let handle = new_handle();
        let mut builder = BatchBuilder::with_capacity(record.timestamp_ms, charge);
        push_record(&mut builder, &record);
        debug_assert_eq!(builder.encoded_bytes(), size);
        let pq = self.queue_mut(topic, partition);
        pq.open = Some(OpenBatch {
            builder,
            handle: handle.clone(),
            id,
            base_timestamp_ms: record.timestamp_ms,
            created: now,
            charged: charge,
        });
        Ok(Appended {
            handle,
            index: 0,
            wake_sender: true,
        })
    }

    /// Moves every sendable batch of every partition with room for another request in flight
    /// into `out`, one unit per partition. Returns when the next batch becomes sendable by
    /// time (a linger or a retry backoff ending), if any is waiting for that.
    pub(crate) fn drain(&mut self, now: Instant, out: &mut Vec<Unit<B>>) -> Option<Instant> {
        let linger = self.config.linger;
        let inflight_max = self.config.partition_inflight_max;
        let unit_bytes_max = self.config.unit_bytes_max;
        let mut next: Option<Instant> = None;
        let mut wake_at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for (topic, parts) in self.topics.iter_mut() {
            for (partition, pq) in parts.iter_mut().enumerate() {
                if pq.inflight >= inflight_max {
                    // Woken when a unit completes.
                    continue;
                }
                if pq.queue.is_empty() {
                    match &pq.open {
                        Some(open) if now >= open.created + linger => {
                            let sealed = seal(pq.open.take().expect("matched"));
                            pq.queue.push_back(sealed);
                        }
                        Some(open) => {
                            wake_at(open.created + linger);
                            continue;
                        }
                        None => continue,
                    }
                }
                let front = pq.queue.front().expect("not empty");
                if let Some(t) = front.not_before.filter(|&t| t > now) {
                    wake_at(t);
                    continue;
                }
                let mut first = pq.queue.pop_front().expect("not empty");
                if first.attempts == 0 {
                    while let Some(q) = pq.queue.front() {
                        if q.attempts != 0 || first.records.len() + q.records.len() > unit_bytes_max
                        {
                            break;
                        }
                        let q = pq.queue.pop_front().expect("checked");
                        first.records.unsplit(q.records);
                        first.batches.extend(q.batches);
                        first.charged += q.charged;
                        first.created = first.created.min(q.created);
                    }
                }
                pq.inflight += 1;
                out.push(Unit {
                    topic: topic.clone(),
                    partition: partition as u32,
                    records: first.records,
                    batches: first.batches,
                    attempts: first.attempts,
                    counted_retries: first.counted_retries,
                    created: first.created,
                    charged: first.charged,
                });
                // More may be sendable at once (another unit, if in-flight room remains).
                if !pq.queue.is_empty() && pq.inflight < inflight_max {
                    wake_at(now);
                }
            }
        }
        next
    }

    /// Seals every open batch so the next drain sends it regardless of linger; returns the id
    /// of the newest batch so far, for [`Accumulator::is_flushed`].
    pub(crate) fn flush_begin(&mut self) -> u64 {
        for parts in self.topics.values_mut() {
            for pq in parts.iter_mut() {
                if let Some(open) = pq.open.take() {
                    pq.queue.push_back(seal(open));
                }
            }
        }
        self.next_batch_id - 1
    }

    /// Whether every batch up to `id` has completed.
    pub(crate) fn is_flushed(&self, id: u64) -> bool {
        self.incomplete.first().is_none_or(|&first| first > id)
    }

    fn finish(&mut self, topic: &str, partition: u32, charged: usize) {
        let pq = self
            .topics
            .get_mut(topic)
            .and_then(|parts| parts.get_mut(partition as usize))
            .expect("a unit comes from a partition queue");
        assert!(pq.inflight > 0, "a unit completed twice");
        pq.inflight -= 1;
        self.buffered_bytes -= charged;
    }

    /// The unit is done (acknowledged, or failed for good): frees its memory and returns its
    /// batches for the caller to resolve.
    pub(crate) fn complete(&mut self, unit: Unit<B>) -> Vec<SealedBatch<B>> {
        self.finish(&unit.topic, unit.partition, unit.charged);
        for b in &unit.batches {
            self.incomplete.remove(&b.id);
        }
        unit.batches
    }

    /// The unit failed retriably: it goes back to the front of its partition, to be sent
    /// again no earlier than `not_before`. `counted`: the retry counts against `retries_max`.
    pub(crate) fn retry(&mut self, unit: Unit<B>, not_before: Instant, counted: bool) {
        let (topic, partition, charged) = (unit.topic.clone(), unit.partition, unit.charged);
        self.finish(&topic, partition, 0);
        let pq = self.queue_mut(&topic, partition);
        pq.queue.push_front(Queued {
            records: unit.records,
            batches: unit.batches,
            charged,
            attempts: unit.attempts + 1,
            counted_retries: unit.counted_retries + u32::from(counted),
            created: unit.created,
            not_before: Some(not_before),
        });
    }

    /// Removes every batch not in flight (open or queued) and returns their handles, for a
    /// producer going away.
    pub(crate) fn abort(&mut self) -> Vec<B> {
        let mut handles = Vec::new();
        for parts in self.topics.values_mut() {
            for pq in parts.iter_mut() {
                if let Some(open) = pq.open.take() {
                    self.incomplete.remove(&open.id);
                    self.buffered_bytes -= open.charged;
                    handles.push(open.handle);
                }
                for q in pq.queue.drain(..) {
                    self.buffered_bytes -= q.charged;
                    for b in q.batches {
                        self.incomplete.remove(&b.id);
                        handles.push(b.handle);
                    }
                }
            }
        }
        handles
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quill_proto::record::{records, validate_batch, BatchHeader};

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_bytes: 1000,
            batch_bytes_max: 4000,
            linger: Duration::from_millis(10),
            buffer_bytes_max: 10_000,
            partition_inflight_max: 1,
            unit_bytes_max: 100_000,
        }
    }

    fn rec(value: &[u8]) -> RecordRef<'_> {
        RecordRef {
            timestamp_ms: 1000,
            key: None,
            value: Some(value),
            headers: &[],
        }
    }

    fn batches_of(unit: &Unit<u64>) -> Vec<BatchHeader> {
        quill_proto::record::batches(&unit.records)
            .map(|b| {
                let (_, range) = b.unwrap();
                validate_batch(&unit.records[range], usize::MAX).unwrap()
            })
            .collect()
    }

    #[test]
    fn record_size_estimate_matches_the_builder() {
        let headers = [
            Header::new("h", "v"),
            Header {
                key: "n".into(),
                value: None,
            },
        ];
        let big = vec![1u8; 300];
        for (key, value, hs) in [
            (None, None, &headers[..0]),
            (Some(&b"k"[..]), Some(&big[..]), &headers[..]),
            (Some(&big[..]), None, &headers[..1]),
        ] {
            let r = RecordRef {
                timestamp_ms: 5000,
                key,
                value,
                headers: hs,
            };
            let mut b = BatchBuilder::new(1000);
            b.push(0, None, None, &[]);
            let before = b.encoded_bytes();
            push_record(&mut b, &r);
            assert_eq!(b.encoded_bytes() - before, record_bytes(4000, 1, &r));
        }
    }

    #[test]
    fn batches_seal_at_batch_bytes_and_keep_order() {
        let mut acc = Accumulator::<u64>::new(config());
        let t: Arc<str> = Arc::from("t");
        let now = Instant::now();
        let mut ids = 0;
        let value = [7u8; 100];
        let mut handles = Vec::new();
        for _ in 0..25 {
            let a = acc
                .append(&t, 0, rec(&value), now, || {
                    ids += 1;
                    ids
                })
                .unwrap();
            handles.push((a.handle, a.index));
        }
        // ~110 bytes per record: 8 fit in a 1000-byte batch with its 61-byte header.
        assert_eq!(handles[0], (1, 0));
        assert_eq!(handles[7], (1, 7));
        assert_eq!(handles[8], (2, 0));
        assert_eq!(handles[24], (4, 0));
        // Sealed batches are sendable at once; the open one waits for its linger.
        let mut out = Vec::new();
        let next = acc.drain(now, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(next, None, "partition busy: woken by completion");
        let unit = out.pop().unwrap();
        let headers = batches_of(&unit);
        assert_eq!(headers.len(), 3);
        assert!(headers.iter().all(|h| h.record_count == 8));
        assert!(unit.records.len() <= 3000);
        let done = acc.complete(unit);
        assert_eq!(done.iter().map(|b| b.handle).collect::<Vec<_>>(), [1, 2, 3]);
        // The last batch goes after its linger.
        let next = acc.drain(now, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(next, now + Duration::from_millis(10));
        acc.drain(next, &mut out);
        let unit = out.pop().unwrap();
        assert_eq!(batches_of(&unit)[0].record_count, 1);
        let mut values = Vec::new();
        for r in records(&unit.records).unwrap() {
            values.push(r.unwrap().value.unwrap().to_vec());
        }
        assert_eq!(values, [value.to_vec()]);
        acc.complete(unit);
        assert!(acc.is_empty());
        assert_eq!(acc.buffered_bytes(), 0);
    }

    #[test]
    fn a_full_open_batch_is_reported_and_sealed_early() {
        let mut acc = Accumulator::<u64>::new(config());
        let t: Arc<str> = Arc::from("t");
        let now = Instant::now();
        let value = [7u8; 300];
        // No open batch: one is opened, nothing is refused.
        let a = acc
            .append_unless_full(&t, 0, rec(&value), now, || 1)
            .unwrap();
        assert_eq!(a.index, 0);
        // ~310 bytes per record: three fit in 1000 bytes with the header, a fourth does not.
        for _ in 0..2 {
            acc.append_unless_full(&t, 0, rec(&value), now, || 1)
                .unwrap();
        }
        let mut out = Vec::new();
        assert!(
            acc.drain(now, &mut out).is_some() && out.is_empty(),
            "open, lingering"
        );
        let small = acc.append_unless_full(&t, 0, rec(b"x"), now, || 2).unwrap();
        assert_eq!(small.index, 3, "a small one still fits");
        assert_eq!(
            acc.append_unless_full(&t, 0, rec(&value), now, || 2)
                .unwrap_err(),
            AppendError::BatchFull
        );
        // Sealed: sendable now, without waiting for the linger.
        acc.drain(now, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(batches_of(&out[0])[0].record_count, 4);
    }

    #[test]
    fn oversized_records_get_a_batch_of_their_own_or_an_error() {
        let mut acc = Accumulator::<u64>::new(config());
        let t: Arc<str> = Arc::from("t");
        let now = Instant::now();
        acc.append(&t, 0, rec(b"small"), now, || 1).unwrap();
        let big = vec![0u8; 2000];
        let a = acc.append(&t, 0, rec(&big), now, || 2).unwrap();
        assert_eq!((a.handle, a.index), (2, 0));
        let huge = vec![0u8; 4000];
        assert!(matches!(
            acc.append(&t, 0, rec(&huge), now, || 3),
            Err(AppendError::TooLarge { max: 4000, .. })
        ));
    }

    #[test]
    fn buffer_limit_refuses_new_batches_until_completion() {
        let mut acc = Accumulator::<u64>::new(AccumulatorConfig {
            buffer_bytes_max: 2000,
            ..config()
        });
        let t: Arc<str> = Arc::from("t");
        let now = Instant::now();
        acc.append(&t, 0, rec(b"a"), now, || 1).unwrap();
        acc.append(&t, 1, rec(b"b"), now, || 2).unwrap();
        assert_eq!(acc.buffered_bytes(), 2000);
        // Room in an open batch is still usable; a third batch is not.
        acc.append(&t, 0, rec(b"c"), now, || 9).unwrap();
        assert_eq!(
            acc.append(&t, 2, rec(b"d"), now, || 3).unwrap_err(),
            AppendError::BufferFull
        );
        let id = acc.flush_begin();
        assert_eq!(id, 2);
        let mut out = Vec::new();
        acc.drain(now, &mut out);
        assert_eq!(out.len(), 2);
        assert!(!acc.is_flushed(id));
        let first = out.remove(0);
        acc.complete(first);
        assert!(!acc.is_flushed(id));
        acc.append(&t, 2, rec(b"d"), now, || 3).unwrap();
        acc.complete(out.remove(0));
        assert!(acc.is_flushed(id), "batch 3 came after the flush");
        assert!(!acc.is_flushed(3));
    }

    #[test]
    fn retries_go_first_after_their_backoff_and_are_not_merged() {
        let mut acc = Accumulator::<u64>::new(config());
        let t: Arc<str> = Arc::from("t");
        let now = Instant::now();
        acc.append(&t, 0, rec(b"one"), now, || 1).unwrap();
        acc.flush_begin();
        let mut out = Vec::new();
        acc.drain(now, &mut out);
        let unit = out.pop().unwrap();
        // While it is in flight more records arrive; the partition is busy.
        acc.append(&t, 0, rec(b"two"), now, || 2).unwrap();
        acc.flush_begin();
        acc.drain(now, &mut out);
        assert!(out.is_empty());
        let later = now + Duration::from_millis(100);
        acc.retry(unit, later, true);
        assert_eq!(acc.drain(now, &mut out), Some(later));
        assert!(out.is_empty());
        acc.drain(later, &mut out);
        let unit = out.pop().unwrap();
        assert_eq!(unit.attempts, 1);
        assert_eq!(unit.counted_retries, 1);
        // The delivery timeout still runs from the batch's first record.
        assert_eq!(unit.created, now);
        assert_eq!(unit.batches.len(), 1);
        assert_eq!(unit.batches[0].handle, 1);
        acc.complete(unit);
        acc.drain(later, &mut out);
        assert_eq!(out.pop().unwrap().batches[0].handle, 2);
    }

    #[test]
    fn leader_change_retries_are_not_counted_and_keep_the_oldest_creation_time() {
        let mut acc = Accumulator::<u64>::new(config());
        let t: Arc<str> = Arc::from("t");
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        acc.append(&t, 0, rec(b"one"), t0, || 1).unwrap();
        acc.flush_begin();
        acc.append(&t, 0, rec(b"two"), t1, || 2).unwrap();
        acc.flush_begin();
        let mut out = Vec::new();
        acc.drain(t1, &mut out);
        let unit = out.pop().unwrap();
        assert_eq!(unit.batches.len(), 2, "fresh batches merge");
        assert_eq!(unit.created, t0);
        acc.retry(unit, t1, false);
        acc.drain(t1, &mut out);
        let unit = out.pop().unwrap();
        assert_eq!((unit.attempts, unit.counted_retries), (1, 0));
        assert_eq!(unit.created, t0);
    }

    #[test]
    fn fresh_batches_merge_into_one_unit_up_to_the_limit() {
        let mut acc = Accumulator::<u64>::new(AccumulatorConfig {
            unit_bytes_max: 2500,
            ..config()
        });
        let t: Arc<str> = Arc::from("t");
        let now = Instant::now();
        let value = [1u8; 900];
        for i in 0..4 {
            acc.append(&t, 0, rec(&value), now, || i).unwrap();
        }
        acc.flush_begin();
        let mut out = Vec::new();
        acc.drain(now, &mut out);
        let unit = out.pop().unwrap();
        assert_eq!(unit.batches.len(), 2);
        assert_eq!(batches_of(&unit).len(), 2);
        let handles = acc.abort();
        assert_eq!(handles, [2, 3]);
        acc.complete(unit);
        assert_eq!(acc.buffered_bytes(), 0);
        assert!(acc.is_empty());
    }
}
