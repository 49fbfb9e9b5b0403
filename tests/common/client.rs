//! The client library's test setup: a real broker and a connected async client on a fresh
//! glommio executor.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;

use quill_client::{Client, ClientConfig};

use super::broker::Broker;
use super::{run, tmpdir};

/// A client configuration for the broker at `addr`, with the library's defaults.
pub fn config(addr: SocketAddr) -> ClientConfig {
    ClientConfig::new(addr.to_string())
}

/// Runs `f` on a fresh executor with a client connected to `broker` (and the broker's common
/// address, for a second client); returns what `f` returned.
pub fn with_client_of<F, Fut, T>(broker: &Broker, f: F) -> T
where
    F: FnOnce(Client, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let addr = broker.addr;
    run(move || async move {
        let client = Client::connect(config(addr)).await.unwrap();
        f(client, addr).await
    })
}

/// Starts a broker with `shards` shards in a fresh directory, runs `f` with a client connected
/// to it, then stops the broker, asserting a clean exit.
pub fn with_client<F, Fut, T>(shards: usize, f: F) -> T
where
    F: FnOnce(Client, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = tmpdir();
    let broker = Broker::start(dir.path(), shards);
    let out = with_client_of(&broker, f);
    broker.stop();
    out
}
