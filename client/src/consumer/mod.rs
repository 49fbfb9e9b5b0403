//! [`Consumer`]: reads records of assigned partitions, fetching from the shard that owns each.
//!
//! Partitions are assigned explicitly ([`Consumer::assign`]) with a start: the earliest or
//! latest offset, a given offset, or the first record at or after a timestamp (resolved with
//! ListOffsets). [`Consumer::poll`] keeps one Fetch in flight per connection (all assigned
//! partitions that connection serves, each from its position) and returns the records of
//! whichever fetches completed, after starting the next fetches from the new positions (so the
//! broker is already holding a fetch when the next records become readable). A fetch
//! long-polls at the broker (`fetch_wait_ms_max`, `fetch_bytes_min`), so a consumer at the end
//! of the log waits instead of spinning, and a fetch still in flight when `poll` times out
//! serves the next `poll`. A consumer fetches over connections of its own, not shared with the
//! client's producers, whose acknowledgements would otherwise queue behind its long polls.
//!
//! Fetched batches may start before the position (the broker returns whole batches); records
//! below it are skipped. Keys, values and header values of the records returned are slices of
//! the fetched batch, not copies. Out-of-range positions follow [`AutoReset`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::Task;

mod offsets;

use super::cluster::{Client, Lane, Retry};
use super::config::{AutoReset, ConsumerConfig};
use super::decode::decode_records;
use super::error::ClientError;
use super::metadata::Route;
use super::records::ConsumedRecord;
use quill_proto::error_code::ErrorCode;
use quill_proto::local::Event;
use quill_proto::protocol::{
    FetchPartition, FetchRequest, FetchTopic, MetadataRequest, Request, Response, OFFSET_NONE,
    TIMESTAMP_EARLIEST, TIMESTAMP_LATEST,
};

/// Where a newly assigned partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOffset {
    /// The oldest record still stored (the log start offset).
    Earliest,
    /// The high watermark: only records produced after the assignment.
    Latest,
    /// This offset (checked on the first fetch; out of range follows [`AutoReset`]).
    Offset(i64),
    /// The first record whose timestamp is at or after this time (ms since the Unix epoch),
    /// or the high watermark if there is none.
    Timestamp(i64),
}

struct Assigned {
    topic: Arc<str>,
    partition: u32,
    /// Offset of the next record to fetch and to return.
    position: i64,
    /// A fetch including this partition is in flight.
    fetching: bool,
    /// Not fetched again before this (after a retriable partition error).
    retry_at: Option<Instant>,
}

/// A fetch that came back, waiting for `poll` to read it.
struct Completed {
    addr: SocketAddr,
    /// What was asked: topic, partition, fetch offset.
    sent: Vec<(Arc<str>, u32, i64)>,
    result: Result<Response, ClientError>,
}

/// Where fetch tasks leave their results. Held by the tasks and the consumer; holds no task,
/// so dropping the consumer cancels its fetches.
#[derive(Default)]
struct Mailbox {
    completed: RefCell<VecDeque<Completed>>,
    arrived: Event,
}

#[derive(Default)]
struct State {
    assigned: Vec<Assigned>,
    inflight: HashMap<SocketAddr, Task<()>>,
    /// Consecutive failed fetches per connection and when to try it again.
    failures: HashMap<SocketAddr, (u32, Instant)>,
    /// An error met while records were already collected; returned by the next poll.
    pending_error: Option<ClientError>,
    /// Damaged ranges skipped, each returned once by a poll ([`ClientError::DamagedRange`]).
    skipped: VecDeque<ClientError>,
}

/// Reads records from assigned partitions of a Quill cluster. Lives on the executor of its
/// [`Client`].
///
/// ```no_run
/// use std::time::Duration;
/// use quill_client::{Client, ClientConfig, ConsumerConfig, StartOffset};
///
/// glommio::LocalExecutor::default().run(async {
///     let client = Client::connect(ClientConfig::default()).await?;
///     let consumer = client.consumer(ConsumerConfig::default())?;
///     consumer.assign("orders", None, StartOffset::Earliest).await?;
///     loop {
///         for record in consumer.poll(Duration::from_secs(1)).await? {
///             println!("{}-{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
///         }
///     }
///     #[allow(unreachable_code)]
///     Ok::<(), quill_client::ClientError>(())
/// })
/// .unwrap();
/// ```
pub struct Consumer {
    client: Client,
    /// The connections this consumer fetches over, its own (see [`Client::consumer`]).
    lane: Cell<Lane>,
    config: ConsumerConfig,
    state: RefCell<State>,
    mailbox: Rc<Mailbox>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Its fetch tasks are cancelled with its state; its connections go too.
        self.state.get_mut().inflight.clear();
        self.client.release_lane(self.lane.get());
    }
}

impl Client {
    /// A consumer sharing this client's metadata; it fetches over connections of its own. See
    /// [`Consumer`].
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        Consumer::new(self.clone(), config)
    }
}

impl Consumer {
    pub(crate) fn new(client: Client, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        config.validate(client.config())?;
        Ok(Consumer {
            lane: Cell::new(client.new_lane()),
            client,
            config,
            state: RefCell::new(State::default()),
            mailbox: Rc::new(Mailbox::default()),
        })
    }

    /// Assigns `partitions` of `topic` (`None`: all of them), each starting at `start`. A
    /// partition already assigned moves to the new start.
    pub async fn assign(
        &self,
        topic: &str,
        partitions: Option<Vec<u32>>,
        start: StartOffset,
    ) -> Result<(), ClientError> {
        let info = self.client.topic(topic).await?;
        let count = info.partition_count();
        let partitions = match partitions {
            None => (0..count).collect::<Vec<u32>>(),
            Some(list) => {
                if let Some(&p) = list.iter().find(|&&p| p >= count) {
                    return Err(ClientError::UnknownPartition {
                        topic: topic.to_string(),
                        partition: p,
                        partitions: count,
                    });
                }
                list
            }
        };
        let topic = info.name.clone();
        let positions = match start {
            StartOffset::Offset(offset) if offset < 0 => {
                return Err(ClientError::InvalidArgument {
                    what: "start offset",
                    reason: format!("{offset} is negative"),
                })
            }
            StartOffset::Offset(offset) => vec![offset; partitions.len()],
            StartOffset::Earliest => {
                self.list_offsets(&topic, &partitions, TIMESTAMP_EARLIEST)
                    .await?
            }
            StartOffset::Latest => {
                self.list_offsets(&topic, &partitions, TIMESTAMP_LATEST)
                    .await?
            }
            StartOffset::Timestamp(t) => {
                let mut found = self.list_offsets(&topic, &partitions, t).await?;
                let none: Vec<u32> = partitions
                    .iter()
                    .zip(&found)
                    .filter(|(_, &o)| o == OFFSET_NONE)
                    .map(|(&p, _)| p)
                    .collect();
                if !none.is_empty() {
                    let latest = self.list_offsets(&topic, &none, TIMESTAMP_LATEST).await?;
                    let mut latest = latest.into_iter();
                    for o in found.iter_mut().filter(|o| **o == OFFSET_NONE) {
                        *o = latest.next().expect("one per partition");
                    }
                }
                found
            }
        };
        let mut st = self.state.borrow_mut();
        for (partition, position) in partitions.into_iter().zip(positions) {
            match st
                .assigned
                .iter_mut()
                .find(|a| a.partition == partition && *a.topic == *topic)
            {
                Some(a) => {
                    a.position = position;
                    a.retry_at = None;
                }
                None => st.assigned.push(Assigned {
                    topic: topic.clone(),
                    partition,
                    position,
                    fetching: false,
                    retry_at: None,
                }),
            }
        }
        drop(st);
        self.abandon_fetches();
        Ok(())
    }

    /// Stops reading `topic` (all its partitions).
    pub fn unassign(&self, topic: &str) {
        self.state
            .borrow_mut()
            .assigned
            .retain(|a| *a.topic != *topic);
        self.abandon_fetches();
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<(Arc<str>, u32)> {
        self.state
            .borrow()
            .assigned
            .iter()
            .map(|a| (a.topic.clone(), a.partition))
            .collect()
    }

    /// The offset of the next record `poll` returns for a partition, if it is assigned.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.state
            .borrow()
            .assigned
            .iter()
            .find(|a| a.partition == partition && *a.topic == *topic)
            .map(|a| a.position)
    }

    /// Moves an assigned partition to `offset`; the next `poll` reads from there.
    pub fn seek(&self, topic: &str, partition: u32, offset: i64) -> Result<(), ClientError> {
        let mut st = self.state.borrow_mut();
        let Some(a) = st
            .assigned
            .iter_mut()
            .find(|a| a.partition == partition && *a.topic == *topic)
        else {
            return Err(ClientError::InvalidArgument {
                what: "seek",
                reason: format!("{topic}-{partition} is not assigned"),
            });
        };
        a.position = offset;
        a.retry_at = None;
        drop(st);
        self.abandon_fetches();
        Ok(())
    }

    /// Waits up to `timeout` for records and returns those that arrived (possibly none). A
    /// fetch still waiting at the broker when the time is up keeps waiting, for the next poll.
    ///
    /// A damaged range on the broker (records stored but unreadable there) is skipped: the poll
    /// after the records before it returns [`ClientError::DamagedRange`] naming it, once, and
    /// the next polls go on after it.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let arrived = self.mailbox.arrived.listen();
            self.take_completed(&mut out).await;
            if !out.is_empty() {
                // Fetch the next records from the new positions while the caller handles these
                // (Kafka's consumer pipelines the same way), so a consumer at the end of the log
                // always has a fetch waiting at the broker. A failure to start is reported by
                // the next poll.
                if let Err(e) = self.start_fetches() {
                    self.keep_error(e);
                }
                return Ok(out);
            }
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            let retry_at = self.start_fetches()?;
            if !self.mailbox.completed.borrow().is_empty() {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            let until = retry_at.map_or(deadline, |t| t.min(deadline));
            futures_lite::future::or(
                arrived,
                glommio::timer::sleep(until.saturating_duration_since(now)),
            )
            .await;
        }
    }

    /// Starts a fetch on every connection that serves assigned partitions and has none in
    /// flight. Returns when a partition or connection held back by a backoff may go again.
    fn start_fetches(&self) -> Result<Option<Instant>, ClientError> {
        let now = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut later = |t: Instant| retry_at = Some(retry_at.map_or(t, |r| r.min(t)));
        let mut groups: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        {
            let st = self.state.borrow();
            for (i, a) in st.assigned.iter().enumerate() {
                if a.fetching {
                    continue;
                }
                if let Some(t) = a.retry_at.filter(|&t| t > now) {
                    later(t);
                    continue;
                }
                match self.client.route(&a.topic, a.partition) {
                    Route::To(addr) => {
                        if st.inflight.contains_key(&addr) {
                            continue;
                        }
                        if let Some(&(_, t)) = st.failures.get(&addr).filter(|(_, t)| *t > now) {
                            later(t);
                            continue;
                        }
                        match groups.iter_mut().find(|(g, _)| *g == addr) {
                            Some((_, v)) => v.push(i),
                            None => groups.push((addr, vec![i])),
                        }
                    }
                    Route::Unknown => {
                        self.client.refresh_in_background(&a.topic);
                        later(now + self.client.retry_backoff());
                    }
                    Route::NoTopic => {
                        return Err(ClientError::UnknownTopic {
                            topic: a.topic.to_string(),
                        })
                    }
                    Route::NoPartition { partitions } => {
                        return Err(ClientError::UnknownPartition {
                            topic: a.topic.to_string(),
                            partition: a.partition,
                            partitions,
                        })
                    }
                }
            }
        }
        let wait_ms = self.config.fetch_wait_ms_max;
        let timeout = self.client.request_timeout() + Duration::from_millis(u64::from(wait_ms));
        for (addr, members) in groups {
            let mut sent = Vec::with_capacity(members.len());
            let mut topics: Vec<FetchTopic> = Vec::new();
            let mut st = self.state.borrow_mut();
            for i in members {
                let a = &mut st.assigned[i];
                a.fetching = true;
                sent.push((a.topic.clone(), a.partition, a.position));
                let part = FetchPartition {
                    partition: a.partition,
                    fetch_offset: a.position,
                    partition_max_bytes: self.config.partition_fetch_bytes_max,
                };
                match topics.iter_mut().find(|t| *t.name == *a.topic) {
                    Some(t) => t.partitions.push(part),
                    None => topics.push(FetchTopic {
                        name: a.topic.to_string(),
                        partitions: vec![part],
                    }),
                }
            }
            // glommio runs a new task at once: no borrow of the state across the spawn.
            drop(st);
            let request = Request::Fetch(FetchRequest {
                // Version 1: leader hints with NOT_LEADER.
                version: 1,
                max_wait_ms: wait_ms,
                min_bytes: self.config.fetch_bytes_min,
                max_bytes: self.config.fetch_bytes_max,
                topics,
            });
            let client = self.client.clone();
            let lane = self.lane.get();
            let mailbox = self.mailbox.clone();
            let task = glommio::spawn_local(async move {
                let result = client.call_on(addr, lane, &request, timeout).await;
                mailbox
                    .completed
                    .borrow_mut()
                    .push_back(Completed { addr, sent, result });
                mailbox.arrived.notify();
            });
            self.state.borrow_mut().inflight.insert(addr, task);
        }
        Ok(retry_at)
    }

    /// A partition moved (seek, assign, unassign) while fetches were out: they may be long
    /// polls from the old positions that would hold their connection for up to
    /// `fetch_wait_ms_max` (a connection answers in order). Cancels them, drops this consumer's
    /// connections and fetches on new ones from the next `poll`. Results not yet read are
    /// dropped too; positions advance only on records returned, so nothing is skipped.
    fn abandon_fetches(&self) {
        let tasks: Vec<Task<()>> = {
            let mut st = self.state.borrow_mut();
            if st.inflight.is_empty() {
                return;
            }
            for a in st.assigned.iter_mut() {
                a.fetching = false;
            }
            st.inflight.drain().map(|(_, t)| t).collect()
        };
        drop(tasks);
        self.mailbox.completed.borrow_mut().clear();
        let old = self.lane.replace(self.client.new_lane());
        self.client.release_lane(old);
    }

    /// Reads every completed fetch: records into `out`, positions forward, errors handled per
    /// their kind (the first fatal one is kept for `poll` to return).
    async fn take_completed(&self, out: &mut Vec<ConsumedRecord>) {
        loop {
            let Some(c) = self.mailbox.completed.borrow_mut().pop_front() else {
                return;
            };
            {
                let mut st = self.state.borrow_mut();
                st.inflight.remove(&c.addr);
                for (topic, partition, _) in &c.sent {
                    if let Some(a) = st
                        .assigned
                        .iter_mut()
                        .find(|a| a.partition == *partition && a.topic == *topic)
                    {
                        a.fetching = false;
                    }
                }
            }
            let response = match c.result {
                Ok(Response::Fetch(f)) => f,
                Ok(Response::Error { code, message }) => {
                    let e = ClientError::Broker {
                        code,
                        message,
                        context: format!("fetch from {}", c.addr),
                    };
                    if code.is_retriable() {
                        self.connection_failed(c.addr, e, &c.sent);
                    } else {
                        self.keep_error(e);
                    }
                    continue;
                }
                Ok(other) => {
                    self.keep_error(ClientError::Protocol {
                        addr: c.addr.to_string(),
                        reason: format!("Fetch answered with {:?}", other.api_key()),
                    });
                    continue;
                }
                Err(e) => {
                    self.connection_failed(c.addr, e, &c.sent);
                    continue;
                }
            };
            self.state.borrow_mut().failures.remove(&c.addr);
            for t in response.topics {
                for p in t.partitions {
                    let Some(&(ref topic, partition, offset)) =
                        c.sent.iter().find(|(topic, partition, _)| {
                            **topic == *t.name && *partition == p.partition
                        })
                    else {
                        continue;
                    };
                    self.fetched(topic, partition, offset, p, out).await;
                }
            }
        }
    }

    /// One partition of a fetch response.
    async fn fetched(
        &self,
        topic: &Arc<str>,
        partition: u32,
        offset: i64,
        p: quill_proto::protocol::FetchPartitionResponse,
        out: &mut Vec<ConsumedRecord>,
    ) {
        // Skip a partition unassigned or moved (seek, assign) while the fetch was out.
        if self.position(topic, partition) != Some(offset) {
            return;
        }
        match p.error_code {
            ErrorCode::None => {
                match decode_records(
                    topic,
                    partition,
                    offset,
                    &p.records,
                    self.config.check_crcs,
                    out,
                ) {
                    Ok(next) => self.set_position(topic, partition, next),
                    Err(e) => self.keep_error(e),
                }
            }
            ErrorCode::OffsetOutOfRange => {
                let reset = match self.config.auto_reset {
                    AutoReset::Earliest => TIMESTAMP_EARLIEST,
                    AutoReset::Latest => TIMESTAMP_LATEST,
                    AutoReset::Error => {
                        self.keep_error(ClientError::OffsetOutOfRange {
                            topic: topic.to_string(),
                            partition,
                            offset,
                            log_start_offset: p.log_start_offset,
                            log_end_offset: p.log_end_offset,
                        });
                        return;
                    }
                };
                match self.list_offsets(topic, &[partition], reset).await {
                    Ok(found) => {
                        tracing::debug!(%topic, partition, offset, to = found[0], "offset out of range: reset");
                        if self.position(topic, partition) == Some(offset) {
                            self.set_position(topic, partition, found[0]);
                        }
                    }
                    Err(e) => self.keep_error(e),
                }
            }
            ErrorCode::CorruptStoredData => {
                self.skip_damaged(topic, partition, offset, p.error_message)
                    .await
            }
            code if code.is_retriable() => {
                if matches!(code, ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable) {
                    // The leader moved or is being elected: the next poll fetches from the
                    // hinted leader if the hint is newer, else from whatever the refresh
                    // (rate-limited) finds.
                    self.client.apply_leader_hint(topic, partition, p.leader);
                    self.client.refresh_in_background(topic);
                }
                if code == ErrorCode::UnknownTopicOrPartition {
                    // Refresh: a topic deleted meanwhile is an error, not a retry.
                    if let Err(e @ ClientError::UnknownTopic { .. }) =
                        self.client.topic(topic).await
                    {
                        self.keep_error(e);
                        return;
                    }
                }
                let retry_at = Instant::now() + self.client.retry_backoff();
                let mut st = self.state.borrow_mut();
                if let Some(a) = st
                    .assigned
                    .iter_mut()
                    .find(|a| a.partition == partition && a.topic == *topic)
                {
                    a.retry_at = Some(retry_at);
                }
            }
            code => self.keep_error(ClientError::Broker {
                code,
                message: p.error_message,
                context: format!("fetch from {topic}-{partition} at offset {offset}"),
            }),
        }
    }

    /// The fetch at `offset` hit a damaged range (`docs/PROTOCOL.md`, "Damaged ranges"): asks
    /// Metadata version 1 for the range holding `offset`, moves past it and reports it once
    /// (the next poll returns [`ClientError::DamagedRange`]). Without a range to skip (a broker
    /// without version 1, or none reported) the error stands, as before.
    async fn skip_damaged(
        &self,
        topic: &Arc<str>,
        partition: u32,
        offset: i64,
        message: Option<String>,
    ) {
        let stand = |message: Option<String>| ClientError::Broker {
            code: ErrorCode::CorruptStoredData,
            message,
            context: format!("fetch from {topic}-{partition} at offset {offset}"),
        };
        let request = Request::Metadata(MetadataRequest {
            version: 1,
            topics: Some(vec![topic.to_string()]),
        });
        let ranges = match self.client.call_any(&request, Retry::Idempotent).await {
            Ok(Response::Metadata(m)) => m.damaged_ranges.unwrap_or_default(),
            _ => Vec::new(),
        };
        let Some(range) = ranges.into_iter().find(|d| {
            *d.topic == **topic
                && d.partition == partition
                && d.first_offset <= offset
                && offset <= d.last_offset
        }) else {
            self.keep_error(stand(message));
            return;
        };
        if self.position(topic, partition) == Some(offset) {
            self.set_position(topic, partition, range.last_offset + 1);
        }
        tracing::warn!(%topic, partition, first = range.first_offset, last = range.last_offset,
            "skipping a damaged range");
        self.state
            .borrow_mut()
            .skipped
            .push_back(ClientError::DamagedRange {
                topic: topic.to_string(),
                partition,
                first: range.first_offset,
                last: range.last_offset,
                reason: message.unwrap_or_default(),
            });
    }

    fn set_position(&self, topic: &str, partition: u32, position: i64) {
        let mut st = self.state.borrow_mut();
        if let Some(a) = st
            .assigned
            .iter_mut()
            .find(|a| a.partition == partition && *a.topic == *topic)
        {
            a.position = position;
        }
    }

    /// The error the next poll returns, if any: a kept error first, then skipped ranges.
    fn take_error(&self) -> Option<ClientError> {
        let mut st = self.state.borrow_mut();
        st.pending_error.take().or_else(|| st.skipped.pop_front())
    }

    fn keep_error(&self, e: ClientError) {
        let mut st = self.state.borrow_mut();
        if st.pending_error.is_none() {
            st.pending_error = Some(e);
        }
    }

    /// A fetch failed as a whole: back off that connection, refresh the topics' leaders, and
    /// give up (report the error) after `retries_max` failures in a row.
    fn connection_failed(&self, addr: SocketAddr, e: ClientError, sent: &[(Arc<str>, u32, i64)]) {
        let retries_max = self.client.config().retries_max;
        let retry_at = Instant::now() + self.client.retry_backoff();
        let give_up = {
            let mut st = self.state.borrow_mut();
            let entry = st.failures.entry(addr).or_insert((0, retry_at));
            entry.0 += 1;
            entry.1 = retry_at;
            if entry.0 > retries_max {
                st.failures.remove(&addr);
                true
            } else {
                false
            }
        };
        let mut refreshed: Vec<&Arc<str>> = Vec::new();
        for (topic, _, _) in sent {
            if !refreshed.contains(&topic) {
                self.client.refresh_in_background(topic);
                refreshed.push(topic);
            }
        }
        // A fetch is idempotent: a timeout is retried like any connection failure (a consumer
        // rides out a pause of its broker, as Kafka's does) and reported after retries_max in a
        // row.
        if give_up || !e.is_retriable() {
            self.keep_error(e);
        }
    }
}
