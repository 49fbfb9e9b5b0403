//! [`Client`]: the async entry point. It reaches the cluster through the bootstrap address,
//! keeps the metadata cache, and owns one pipelined connection per (broker, port) and *lane*,
//! opened on first use and replaced when it breaks. Producers, consumers and admins made from a
//! client share its metadata and the shared lane's connections, except that each consumer
//! fetches on a lane of its own: a connection answers in request order, so a fetch
//! long-polling at the broker would otherwise hold back every produce acknowledgement queued
//! behind it on the same connection (Kafka's clients likewise give each consumer and producer
//! its own connections).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::ClientConfig;
use super::connection::{Connection, ConnectionSettings};
use super::error::ClientError;
use super::metadata::{resolve_host, Metadata, Route, TopicInfo};
use quill_proto::error_code::ErrorCode;
use quill_proto::local::Event;
use quill_proto::protocol::{
    LeaderHint, Limits, MetadataRequest, MetadataResponse, Request, Response,
};

/// Whether `outcome` allows sending the request again under `retry`.
fn may_retry(outcome: &Result<Response, ClientError>, retry: Retry) -> bool {
    match outcome {
        Ok(Response::Error { code, .. }) => match retry {
            Retry::Idempotent => code.is_retriable(),
            Retry::NotIdempotent => matches!(
                code,
                ErrorCode::BrokerShuttingDown
                    | ErrorCode::TooManyInflightRequests
                    | ErrorCode::NotController
            ),
        },
        Ok(_) => false,
        Err(e) if e.is_timeout() => false,
        Err(e) => match retry {
            Retry::Idempotent => e.is_retriable(),
            Retry::NotIdempotent => matches!(e, ClientError::Unreachable { .. }),
        },
    }
}

/// Which failures a request may be sent again after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads: any retriable failure, including a connection lost mid-request.
    Idempotent,
    /// Topic creation and deletion: only when the broker certainly did not act (the
    /// connection could not be opened, or it refused the request as a whole while shutting
    /// down or overloaded), so a retry cannot turn success into "already exists".
    NotIdempotent,
}

enum Slot {
    Ready(Connection),
    /// Another task is opening this connection; wait for it.
    Connecting(Rc<Event>),
}

/// A set of connections, one per broker port: lane [`SHARED_LANE`] serves producers, admins and
/// metadata; every consumer gets a lane of its own for its fetches.
pub(crate) type Lane = u64;
pub(crate) const SHARED_LANE: Lane = 0;

struct Inner {
    config: ClientConfig,
    settings: ConnectionSettings,
    bootstrap: Vec<SocketAddr>,
    metadata: RefCell<Metadata>,
    pool: RefCell<HashMap<(SocketAddr, Lane), Slot>>,
    next_lane: Cell<Lane>,
    limits: Cell<Limits>,
    /// Topics with a background metadata refresh under way.
    refreshing: RefCell<HashSet<Arc<str>>>,
    /// Where `call_any` starts in its list of brokers: moved on past a broker that failed, so
    /// a dead or hung bootstrap node costs one failure, not one per request.
    any_start: Cell<usize>,
}

/// A connection to a Quill cluster, for use inside a glommio executor.
///
/// Cheap to clone (clones share connections and metadata). It lives on the executor that
/// created it and is not `Send`; run one per executor (thread-per-core), or use
/// [`blocking::Client`](super::blocking::Client) from ordinary threads.
///
/// ```no_run
/// use quill_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
///
/// glommio::LocalExecutor::default().run(async {
///     let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
///     let producer = client.producer(ProducerConfig::default())?;
///     let delivery = producer.send(ProducerRecord::new("orders", "hello")).await?;
///     let meta = delivery.await?;
///     println!("written at {}-{} offset {}", meta.topic, meta.partition, meta.offset);
///     Ok::<(), quill_client::ClientError>(())
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

/// Removes a `Connecting` slot if the opening task goes away without finishing (cancelled),
/// so waiters do not wait forever.
struct ConnectingGuard<'a> {
    client: &'a Client,
    key: (SocketAddr, Lane),
    event: Rc<Event>,
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        let mut pool = self.client.inner.pool.borrow_mut();
        if let Some(Slot::Connecting(ev)) = pool.get(&self.key) {
            if Rc::ptr_eq(ev, &self.event) {
                pool.remove(&self.key);
            }
        }
        drop(pool);
        self.event.notify();
    }
}

/// Parses and resolves a `host:port` broker address.
pub(crate) fn resolve_addr(addr: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let bad = |reason: String| ClientError::BadAddress {
        addr: addr.to_string(),
        reason,
    };
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("expected HOST:PORT".to_string()));
    };
    if host.is_empty() {
        return Err(bad("expected HOST:PORT".to_string()));
    }
    port.parse::<u16>()
        .map_err(|_| bad(format!("'{port}' is not a port number")))?;
    let mut addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| bad(super::error::describe_io(&e)))?
        .collect();
    // IPv4 first: `localhost` usually means the broker's default 127.0.0.1 listener.
    addrs.sort_by_key(SocketAddr::is_ipv6);
    if addrs.is_empty() {
        return Err(bad("the name resolves to no address".to_string()));
    }
    Ok(addrs)
}

impl Client {
    /// Connects to the bootstrap broker (retrying up to `retries_max` times), learns its limits
    /// (ApiVersions) and the brokers of the cluster (Metadata).
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let bootstrap = resolve_addr(&config.bootstrap)?;
        let settings = ConnectionSettings {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            inflight_requests_max: config.inflight_requests_max,
            response_frame_bytes_max: config.frame_bytes_max,
            client_software_name: config.client_software_name.clone(),
        };
        let client = Client {
            inner: Rc::new(Inner {
                config,
                settings,
                bootstrap,
                metadata: RefCell::new(Metadata::default()),
                pool: RefCell::new(HashMap::new()),
                next_lane: Cell::new(SHARED_LANE + 1),
                limits: Cell::new(Limits::default()),
                refreshing: RefCell::new(HashSet::new()),
                any_start: Cell::new(0),
            }),
        };
        // Brokers only: an empty topic list.
        client.refresh_metadata(Some(Vec::new())).await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The limits the bootstrap broker announced (ApiVersions): `frame_bytes_max`,
    /// `batch_bytes_max`, `fetch_bytes_max`, `fetch_wait_ms_max`, `inflight_requests_max`.
    pub fn broker_limits(&self) -> Limits {
        self.inner.limits.get()
    }

    /// Addresses of the connections currently open, sorted, each address once (for
    /// diagnostics and tests: a shard-aware client talks to every shard port it needs).
    pub fn connections(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self
            .inner
            .pool
            .borrow()
            .iter()
            .filter_map(|((addr, _), slot)| match slot {
                Slot::Ready(c) if c.is_open() => Some(*addr),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A new lane: connections no other user of this client sends on.
    pub(crate) fn new_lane(&self) -> Lane {
        let lane = self.inner.next_lane.get();
        self.inner.next_lane.set(lane + 1);
        lane
    }

    /// Forgets `lane`'s connections; each closes once its last user lets go of it.
    pub(crate) fn release_lane(&self, lane: Lane) {
        assert_ne!(
            lane, SHARED_LANE,
            "the shared lane lives as long as the client"
        );
        let gone: Vec<Slot> = {
            let mut pool = self.inner.pool.borrow_mut();
            let keys: Vec<(SocketAddr, Lane)> =
                pool.keys().filter(|(_, l)| *l == lane).copied().collect();
            keys.iter().filter_map(|k| pool.remove(k)).collect()
        };
        // Dropped outside the borrow: waking a task that is opening one of them may touch the
        // pool.
        drop(gone);
    }

    /// Connections currently in the pool, on every lane (for tests: consumers that went away
    /// leave none behind).
    pub fn connection_count(&self) -> usize {
        self.inner
            .pool
            .borrow()
            .values()
            .filter(|s| matches!(s, Slot::Ready(c) if c.is_open()))
            .count()
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.settings.request_timeout
    }

    pub(crate) fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.inner.config.retry_backoff_ms)
    }

    /// The open connection to `addr` of the shared lane, opening it if needed (one attempt).
    pub(crate) async fn connection(&self, addr: SocketAddr) -> Result<Connection, ClientError> {
        self.connection_on(addr, SHARED_LANE).await
    }

    /// The open connection to `addr` of `lane`, opening it if needed (one attempt).
    pub(crate) async fn connection_on(
        &self,
        addr: SocketAddr,
        lane: Lane,
    ) -> Result<Connection, ClientError> {
        let key = (addr, lane);
        let event = loop {
            let waiting = {
                let mut pool = self.inner.pool.borrow_mut();
                match pool.get(&key) {
                    Some(Slot::Ready(c)) if c.is_open() => return Ok(c.clone()),
                    Some(Slot::Connecting(ev)) => Some(ev.clone()),
                    _ => {
                        let ev = Rc::new(Event::new());
                        pool.insert(key, Slot::Connecting(ev.clone()));
                        break ev;
                    }
                }
            };
            if let Some(ev) = waiting {
                // Registered before any await, so the opener's notify is not missed.
                ev.listen().await;
            }
        };
        let guard = ConnectingGuard {
            client: self,
            key,
            event,
        };
        let result = Connection::open(addr, &self.inner.settings).await;
        if let Ok(conn) = &result {
            self.inner
                .pool
                .borrow_mut()
                .insert(key, Slot::Ready(conn.clone()));
            if self.inner.limits.get() == Limits::default() {
                self.inner.limits.set(conn.limits());
            }
        }
        drop(guard);
        result
    }

    /// Sends `request` to `addr` once and waits for the answer, at most `timeout`.
    pub(crate) async fn call_at(
        &self,
        addr: SocketAddr,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.call_on(addr, SHARED_LANE, request, timeout).await
    }

    /// [`Client::call_at`] over a connection of `lane`.
    pub(crate) async fn call_on(
        &self,
        addr: SocketAddr,
        lane: Lane,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.connection_on(addr, lane)
            .await?
            .call(request, timeout)
            .await
    }

    /// Sends `request` to a bootstrap broker (then to the other known brokers in turn),
    /// retrying per `retry` up to `retries_max` times
    /// with backoff; a timeout is not retried ([`ClientError::is_timeout`]), so an
    /// unresponsive broker costs one timeout, not `retries_max + 1` of them. The final answer
    /// may be a `Response::Error`.
    pub(crate) async fn call_any(
        &self,
        request: &Request,
        retry: Retry,
    ) -> Result<Response, ClientError> {
        let retries_max = self.inner.config.retries_max;
        let mut attempt = 0u32;
        loop {
            // The bootstrap first, then every broker the metadata named (as Kafka's clients
            // ask any known node): a cluster stays reachable when the bootstrap node dies.
            let mut addrs = self.inner.bootstrap.clone();
            for a in self.inner.metadata.borrow().broker_addrs() {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            let start = self.inner.any_start.get();
            let addr = addrs[(start + attempt as usize) % addrs.len()];
            let outcome = self.call_at(addr, request, self.request_timeout()).await;
            if outcome
                .as_ref()
                .is_err_and(|e| e.is_connection() || e.is_timeout())
            {
                self.inner.any_start.set(start + attempt as usize + 1);
            }
            if !may_retry(&outcome, retry) || attempt >= retries_max {
                return outcome;
            }
            attempt += 1;
            tracing::debug!(attempt, ?outcome, "retrying a request");
            glommio::timer::sleep(self.retry_backoff()).await;
        }
    }

    /// Asks for metadata of `topics` (`None`: all, empty: brokers only) at version 2 (falling
    /// back to version 0 from a broker without it) and updates the cache.
    pub(crate) async fn refresh_metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, ClientError> {
        let request = Request::Metadata(MetadataRequest::latest(topics.clone()));
        let mut response = self.call_any(&request, Retry::Idempotent).await?;
        if let Response::Error {
            code: ErrorCode::UnsupportedVersion,
            ..
        } = response
        {
            let request = Request::Metadata(MetadataRequest::new(topics));
            response = self.call_any(&request, Retry::Idempotent).await?;
        }
        match response {
            Response::Metadata(m) => {
                self.inner
                    .metadata
                    .borrow_mut()
                    .update(&m, Instant::now(), resolve_host);
                Ok(m)
            }
            Response::Error { code, message } => Err(ClientError::Broker {
                code,
                message,
                context: "metadata request".to_string(),
            }),
            other => Err(ClientError::Protocol {
                addr: self.inner.config.bootstrap.clone(),
                reason: format!("Metadata answered with {:?}", other.api_key()),
            }),
        }
    }

    /// Refreshes `topic` in the background unless a refresh of it is already under way or
    /// one started less than `metadata_refresh_backoff_ms` ago (a partition without a leader
    /// would otherwise cost a Metadata request per retry).
    pub(crate) fn refresh_in_background(&self, topic: &Arc<str>) {
        let backoff = Duration::from_millis(self.inner.config.metadata_refresh_backoff_ms);
        if self.inner.refreshing.borrow().contains(topic)
            || !self
                .inner
                .metadata
                .borrow_mut()
                .refresh_due(topic, Instant::now(), backoff)
        {
            return;
        }
        self.inner.refreshing.borrow_mut().insert(topic.clone());
        let client = self.clone();
        let topic = topic.clone();
        glommio::spawn_local(async move {
            if let Err(e) = client.refresh_metadata(Some(vec![topic.to_string()])).await {
                tracing::debug!(%topic, error = %e, "background metadata refresh failed");
            }
            client.inner.refreshing.borrow_mut().remove(&topic);
        })
        .detach();
    }

    /// `topic`'s partition count if the cache knows it, without waiting; a copy older than
    /// `metadata_max_age_ms` at `now` is still used while a refresh runs in the background.
    pub(crate) fn cached_partition_count(&self, topic: &Arc<str>, now: Instant) -> Option<u32> {
        let max_age = Duration::from_millis(self.inner.config.metadata_max_age_ms);
        let (count, fresh) = {
            let m = self.inner.metadata.borrow();
            let t = m.topic(topic)?;
            (t.partition_count(), t.is_fresh(now, max_age))
        };
        if !fresh {
            self.refresh_in_background(topic);
        }
        Some(count)
    }

    /// `topic`'s metadata, refreshed now. [`ClientError::UnknownTopic`] if it does not exist.
    pub(crate) async fn topic(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        let response = self.refresh_metadata(Some(vec![topic.to_string()])).await?;
        if let Some(t) = self.inner.metadata.borrow().topic(topic) {
            return Ok(t.clone());
        }
        let code = response
            .topics
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.error_code)
            .unwrap_or(ErrorCode::UnknownTopicOrPartition);
        Err(ClientError::from_code(code, None, topic, None, || {
            format!("metadata for topic '{topic}'")
        }))
    }

    /// Where requests for a partition go, per the cache.
    pub(crate) fn route(&self, topic: &str, partition: u32) -> Route {
        self.inner.metadata.borrow().route(topic, partition)
    }

    /// Takes in the leader hint of a `NOT_LEADER` answer (see [`Metadata::apply_leader_hint`]).
    pub(crate) fn apply_leader_hint(&self, topic: &str, partition: u32, hint: LeaderHint) -> bool {
        self.inner
            .metadata
            .borrow_mut()
            .apply_leader_hint(topic, partition, hint)
    }

    /// Sends an admin request (CreateTopic, DeleteTopic) to the cluster's metadata leader, as
    /// the last Metadata v2 answer named it (a bootstrap broker while none is known), retrying
    /// per `retry` like [`Client::call_any`]. A `NOT_CONTROLLER` answer means nothing was done:
    /// the metadata is refreshed to find the new leader and the request sent there, up to
    /// `retries_max` times.
    pub(crate) async fn call_controller(
        &self,
        request: &Request,
        retry: Retry,
    ) -> Result<Response, ClientError> {
        let retries_max = self.inner.config.retries_max;
        let mut attempt = 0u32;
        loop {
            let controller = {
                let m = self.inner.metadata.borrow();
                m.controller().and_then(|node| m.broker_addr(node, None))
            };
            let addr = controller.unwrap_or_else(|| {
                self.inner.bootstrap[attempt as usize % self.inner.bootstrap.len()]
            });
            let outcome = self.call_at(addr, request, self.request_timeout()).await;
            // Not (or no longer) the controller: nothing was done; find the new one.
            let moved = match &outcome {
                Ok(Response::Error { code, .. }) => *code == ErrorCode::NotController,
                Err(ClientError::Unreachable { .. }) => controller.is_some(),
                _ => false,
            };
            if !may_retry(&outcome, retry) || attempt >= retries_max {
                return outcome;
            }
            attempt += 1;
            tracing::debug!(attempt, ?outcome, "retrying an admin request");
            if moved {
                self.inner.metadata.borrow_mut().forget_controller();
            }
            glommio::timer::sleep(self.retry_backoff()).await;
            if moved {
                // Brokers and the controller only; a failure leaves the bootstrap to ask.
                let _ = self.refresh_metadata(Some(Vec::new())).await;
            }
        }
    }

    /// Forgets what the cache knows of `topic`.
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.inner.metadata.borrow_mut().forget(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_explain() {
        assert_eq!(
            resolve_addr("127.0.0.1:9092").unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], 9092))]
        );
        let e = resolve_addr("localhost").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad broker address 'localhost': expected HOST:PORT"
        );
        let e = resolve_addr("127.0.0.1:http").unwrap_err();
        assert!(e.to_string().contains("'http' is not a port number"), "{e}");
        assert!(!resolve_addr("localhost:9092").unwrap().is_empty());
    }
}
