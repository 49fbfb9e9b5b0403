//! The blocking API, for programs that do not run glommio.
//!
//! [`Client::connect`] starts a background thread running a glommio executor with an async
//! [`super::Client`] on it; every call here is forwarded to that thread over a channel and
//! waits for the answer on a std channel. The types mirror the async ones: [`Producer`] (with
//! [`Producer::send`] returning a [`DeliveryHandle`] to [`wait`](DeliveryHandle::wait) on,
//! and [`Producer::send_sync`]), [`Consumer`] and [`Admin`]. All are `Send` and `Sync`;
//! share them between threads freely.
//!
//! The background thread lives as long as any of these handles: when the last one is dropped,
//! producers flush what they hold, and the drop waits for the thread to finish.
//!
//! ```no_run
//! use std::time::Duration;
//! use quill_client::blocking::Client;
//! use quill_client::{ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, StartOffset};
//!
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092"))?;
//! client.admin().create_topic(NewTopic::new("greetings", 1))?;
//!
//! let producer = client.producer(ProducerConfig::default())?;
//! let meta = producer.send_sync(ProducerRecord::new("greetings", "hello"))?;
//! println!("offset {}", meta.offset);
//!
//! let consumer = client.consumer(ConsumerConfig::default())?;
//! consumer.assign("greetings", None, StartOffset::Earliest)?;
//! for record in consumer.poll(Duration::from_secs(1))? {
//!     println!("{:?}", record.value);
//! }
//! # Ok::<(), quill_client::ClientError>(())
//! ```

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder};

use super::admin::{NewTopic, TopicDescription, TopicSummary};
use super::bridge::{self, LocalReceiver, RemoteSender};
use super::config::{ClientConfig, ConsumerConfig, ProducerConfig};
use super::consumer::StartOffset;
use super::error::ClientError;
use super::producer::ProducerStats;
use super::records::{ConsumedRecord, ProducerRecord, RecordMetadata};
use quill_proto::local::Event;
use quill_proto::protocol::DescribeClusterResponse;
use quill_proto::protocol::Limits;

/// Memory glommio registers for file I/O on the client's executor; the client does no file
/// I/O, so it is kept small (it counts against `ulimit -l`).
const IO_MEMORY_BYTES: usize = 256 << 10;

type Reply<T> = SyncSender<Result<T, ClientError>>;

fn reply<T>() -> (Reply<T>, Receiver<Result<T, ClientError>>) {
    mpsc::sync_channel(1)
}

enum RootCmd {
    Producer(ProducerConfig, Reply<RemoteSender<ProducerCmd>>),
    Consumer(ConsumerConfig, Reply<RemoteSender<ConsumerCmd>>),
    Admin(AdminCmd),
    Limits(SyncSender<Limits>),
}

enum AdminCmd {
    Create(NewTopic, Reply<()>),
    Delete(String, Reply<()>),
    List(Reply<Vec<TopicSummary>>),
    Describe(String, Reply<TopicDescription>),
    DescribeCluster(Option<Vec<String>>, Reply<DescribeClusterResponse>),
}

enum DeliveryMsg {
    Accepted,
    Done(Result<RecordMetadata, ClientError>),
}

enum ProducerCmd {
    Send(ProducerRecord, Sender<DeliveryMsg>),
    Flush(Reply<()>),
    Stats(SyncSender<ProducerStats>),
}

enum ConsumerCmd {
    Assign(String, Option<Vec<u32>>, StartOffset, Reply<()>),
    Poll(Duration, Reply<Vec<ConsumedRecord>>),
    Position(String, u32, SyncSender<Option<i64>>),
    Seek(String, u32, i64, Reply<()>),
}

/// The background thread, shared by a client and everything made from it.
struct Shared {
    root: Option<RemoteSender<RootCmd>>,
    executor: Option<ExecutorJoinHandle<()>>,
}

impl Shared {
    fn send(&self, cmd: RootCmd) -> Result<(), ClientError> {
        self.root
            .as_ref()
            .expect("set until drop")
            .send(cmd)
            .map_err(|_| ClientError::Closed { what: "client" })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the root channel ends the executor once every object's work is done.
        self.root.take();
        if let Some(executor) = self.executor.take() {
            let _ = executor.join();
        }
    }
}

fn closed<T>(_: T) -> ClientError {
    ClientError::Closed { what: "client" }
}

/// A blocking client: an async client on a background glommio thread.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// Starts the background thread and connects (see [`super::Client::connect`]); returns
    /// once connected, or with the error that prevented it.
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let (root, root_rx) = bridge::channel();
        let (ready_tx, ready_rx) = reply::<()>();
        let executor = LocalExecutorBuilder::default()
            .name("quill-client")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || run_root(config, root_rx, ready_tx))
            .map_err(|e| ClientError::InvalidArgument {
                what: "client thread",
                reason: format!("cannot start the client's executor: {e}"),
            })?;
        let shared = Shared {
            root: Some(root),
            executor: Some(executor),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Client {
                shared: Arc::new(shared),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Closed { what: "client" }),
        }
    }

    /// The limits the bootstrap broker announced.
    pub fn broker_limits(&self) -> Result<Limits, ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.send(RootCmd::Limits(tx))?;
        rx.recv().map_err(closed)
    }

    /// A producer; see [`super::Producer`].
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer, ClientError> {
        let (tx, rx) = reply();
        self.shared.send(RootCmd::Producer(config, tx))?;
        let commands = rx.recv().map_err(closed)??;
        Ok(Producer {
            commands,
            _shared: self.shared.clone(),
        })
    }

    /// A consumer; see [`super::Consumer`].
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let (tx, rx) = reply();
        self.shared.send(RootCmd::Consumer(config, tx))?;
        let commands = rx.recv().map_err(closed)??;
        Ok(Consumer {
            commands,
            _shared: self.shared.clone(),
        })
    }

    /// Topic administration; see [`super::Admin`].
    pub fn admin(&self) -> Admin {
        Admin {
            shared: self.shared.clone(),
        }
    }
}

/// Blocking topic administration.
#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> AdminCmd) -> Result<T, ClientError> {
        let (tx, rx) = reply();
        self.shared.send(RootCmd::Admin(make(tx)))?;
        rx.recv().map_err(closed)?
    }

    /// See [`super::Admin::create_topic`].
    pub fn create_topic(&self, topic: NewTopic) -> Result<(), ClientError> {
        self.call(|r| AdminCmd::Create(topic, r))
    }

    /// See [`super::Admin::delete_topic`].
    pub fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.call(|r| AdminCmd::Delete(name.to_string(), r))
    }

    /// See [`super::Admin::list_topics`].
    pub fn list_topics(&self) -> Result<Vec<TopicSummary>, ClientError> {
        self.call(AdminCmd::List)
    }

    /// See [`super::Admin::describe_topic`].
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        self.call(|r| AdminCmd::Describe(name.to_string(), r))
    }

    /// See [`super::Admin::describe_cluster`].
    pub fn describe_cluster(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<DescribeClusterResponse, ClientError> {
        self.call(|r| AdminCmd::DescribeCluster(topics, r))
    }
}

/// A blocking producer. Dropping it flushes what it holds in the background.
pub struct Producer {
    commands: RemoteSender<ProducerCmd>,
    _shared: Arc<Shared>,
}

/// The pending outcome of one [`Producer::send`].
#[must_use = "a delivery reports whether the record was written"]
pub struct DeliveryHandle {
    rx: Receiver<DeliveryMsg>,
}

impl DeliveryHandle {
    /// Blocks until the record is acknowledged (or written, with acks none) or failed.
    pub fn wait(self) -> Result<RecordMetadata, ClientError> {
        loop {
            match self.rx.recv() {
                Ok(DeliveryMsg::Done(result)) => return result,
                Ok(DeliveryMsg::Accepted) => continue,
                Err(_) => return Err(ClientError::Closed { what: "producer" }),
            }
        }
    }

    /// Waits at most `timeout` for the outcome; `None` if it is not known yet. Once it has
    /// returned an outcome, the handle is spent: call it no more.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<RecordMetadata, ClientError>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(DeliveryMsg::Done(result)) => return Some(result),
                Ok(DeliveryMsg::Accepted) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Err(ClientError::Closed { what: "producer" }))
                }
            }
        }
    }
}

impl Producer {
    /// Queues `record` (blocking while the producer's buffer is full) and returns a handle
    /// to wait for its delivery. Errors known at once (unknown topic, record too large) come
    /// back here.
    pub fn send(&self, record: ProducerRecord) -> Result<DeliveryHandle, ClientError> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(ProducerCmd::Send(record, tx))
            .map_err(|_| ClientError::Closed { what: "producer" })?;
        match rx.recv() {
            Ok(DeliveryMsg::Accepted) => Ok(DeliveryHandle { rx }),
            Ok(DeliveryMsg::Done(Err(e))) => Err(e),
            Ok(DeliveryMsg::Done(Ok(meta))) => {
                let (tx, rx) = mpsc::channel();
                let _ = tx.send(DeliveryMsg::Done(Ok(meta)));
                Ok(DeliveryHandle { rx })
            }
            Err(_) => Err(ClientError::Closed { what: "producer" }),
        }
    }

    /// Sends `record` and waits for its delivery.
    pub fn send_sync(&self, record: ProducerRecord) -> Result<RecordMetadata, ClientError> {
        self.send(record)?.wait()
    }

    /// See [`super::Producer::flush`].
    pub fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = reply();
        self.commands
            .send(ProducerCmd::Flush(tx))
            .map_err(|_| ClientError::Closed { what: "producer" })?;
        rx.recv().map_err(closed)?
    }

    /// See [`super::Producer::stats`].
    pub fn stats(&self) -> Result<ProducerStats, ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.commands
            .send(ProducerCmd::Stats(tx))
            .map_err(|_| ClientError::Closed { what: "producer" })?;
        rx.recv().map_err(closed)
    }
}

/// A blocking consumer.
pub struct Consumer {
    commands: RemoteSender<ConsumerCmd>,
    _shared: Arc<Shared>,
}

impl Consumer {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> ConsumerCmd) -> Result<T, ClientError> {
        let (tx, rx) = reply();
        self.commands
            .send(make(tx))
            .map_err(|_| ClientError::Closed { what: "consumer" })?;
        rx.recv().map_err(closed)?
    }

    /// See [`super::Consumer::assign`].
    pub fn assign(
        &self,
        topic: &str,
        partitions: Option<Vec<u32>>,
        start: StartOffset,
    ) -> Result<(), ClientError> {
        self.call(|r| ConsumerCmd::Assign(topic.to_string(), partitions, start, r))
    }

    /// See [`super::Consumer::poll`].
    pub fn poll(&self, timeout: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        self.call(|r| ConsumerCmd::Poll(timeout, r))
    }

    /// See [`super::Consumer::position`].
    pub fn position(&self, topic: &str, partition: u32) -> Result<Option<i64>, ClientError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.commands
            .send(ConsumerCmd::Position(topic.to_string(), partition, tx))
            .map_err(|_| ClientError::Closed { what: "consumer" })?;
        rx.recv().map_err(closed)
    }

    /// See [`super::Consumer::seek`].
    pub fn seek(&self, topic: &str, partition: u32, offset: i64) -> Result<(), ClientError> {
        self.call(|r| ConsumerCmd::Seek(topic.to_string(), partition, offset, r))
    }
}

/// Counts the objects still served on the executor, so it ends only after their last work.
#[derive(Default)]
struct Live {
    count: Cell<usize>,
    idle: Event,
}

struct LiveGuard(Rc<Live>);

impl Live {
    fn enter(self: &Rc<Self>) -> LiveGuard {
        self.count.set(self.count.get() + 1);
        LiveGuard(self.clone())
    }
}

impl Clone for LiveGuard {
    fn clone(&self) -> Self {
        self.0.enter()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.count.set(self.0.count.get() - 1);
        self.0.idle.notify();
    }
}

async fn run_root(config: ClientConfig, rx: LocalReceiver<RootCmd>, ready: Reply<()>) {
    let client = match super::Client::connect(config).await {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let live = Rc::new(Live::default());
    while let Some(cmd) = rx.recv().await {
        match cmd {
            RootCmd::Producer(config, reply) => match client.producer(config) {
                Ok(p) => {
                    let (tx, commands) = bridge::channel();
                    glommio::spawn_local(serve_producer(p, commands, live.enter())).detach();
                    let _ = reply.send(Ok(tx));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            RootCmd::Consumer(config, reply) => match client.consumer(config) {
                Ok(c) => {
                    let (tx, commands) = bridge::channel();
                    glommio::spawn_local(serve_consumer(c, commands, live.enter())).detach();
                    let _ = reply.send(Ok(tx));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            RootCmd::Admin(cmd) => {
                glommio::spawn_local(serve_admin(client.admin(), cmd, live.enter())).detach();
            }
            RootCmd::Limits(reply) => {
                let _ = reply.send(client.broker_limits());
            }
        }
    }
    // Every handle is gone; let the objects finish (producers flush).
    loop {
        let idle = live.idle.listen();
        if live.count.get() == 0 {
            return;
        }
        idle.await;
    }
}

async fn serve_admin(admin: super::Admin, cmd: AdminCmd, _live: LiveGuard) {
    match cmd {
        AdminCmd::Create(topic, reply) => {
            let _ = reply.send(admin.create_topic(topic).await);
        }
        AdminCmd::Delete(name, reply) => {
            let _ = reply.send(admin.delete_topic(&name).await);
        }
        AdminCmd::List(reply) => {
            let _ = reply.send(admin.list_topics().await);
        }
        AdminCmd::DescribeCluster(topics, reply) => {
            let _ = reply.send(admin.describe_cluster(topics).await);
        }
        AdminCmd::Describe(name, reply) => {
            let _ = reply.send(admin.describe_topic(&name).await);
        }
    }
}

async fn serve_producer(
    producer: super::Producer,
    commands: LocalReceiver<ProducerCmd>,
    live: LiveGuard,
) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            ProducerCmd::Send(record, reply) => match producer.send(record).await {
                Ok(delivery) => {
                    let _ = reply.send(DeliveryMsg::Accepted);
                    let live = live.clone();
                    glommio::spawn_local(async move {
                        let result = delivery.await;
                        let _ = reply.send(DeliveryMsg::Done(result));
                        drop(live);
                    })
                    .detach();
                }
                Err(e) => {
                    let _ = reply.send(DeliveryMsg::Done(Err(e)));
                }
            },
            ProducerCmd::Flush(reply) => {
                let _ = reply.send(producer.flush().await);
            }
            ProducerCmd::Stats(reply) => {
                let _ = reply.send(producer.stats());
            }
        }
    }
    // The handle was dropped: send what is left before going.
    let _ = producer.flush().await;
}

async fn serve_consumer(
    consumer: super::Consumer,
    commands: LocalReceiver<ConsumerCmd>,
    _live: LiveGuard,
) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            ConsumerCmd::Assign(topic, partitions, start, reply) => {
                let _ = reply.send(consumer.assign(&topic, partitions, start).await);
            }
            ConsumerCmd::Poll(timeout, reply) => {
                let _ = reply.send(consumer.poll(timeout).await);
            }
            ConsumerCmd::Position(topic, partition, reply) => {
                let _ = reply.send(consumer.position(&topic, partition));
            }
            ConsumerCmd::Seek(topic, partition, offset, reply) => {
                let _ = reply.send(consumer.seek(&topic, partition, offset));
            }
        }
    }
}
