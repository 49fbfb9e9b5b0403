//! The transport's errors: everything `start` and `TlsFiles::load` can refuse, as values.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the transport did not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A setting is impossible; the message names it.
    #[error("transport setting: {0}")]
    Config(String),
    /// This node's own replication address could not be bound.
    #[error("cannot bind the replication address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The certificate files are missing, garbled or do not fit together.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The CPU to pin the transport thread to is not one this process may run on.
    #[error("cpu {cpu} is not available to this process (available: {available:?})")]
    Cpu { cpu: usize, available: Vec<usize> },
    /// The thread or its runtime could not be started.
    #[error("cannot start the transport thread: {0}")]
    Thread(std::io::Error),
}

/// Why certificate files could not be loaded or turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: file not found (make them with `quill cluster init-certs DIR`)")]
    Missing { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not PEM, or PEM without the expected item.
    #[error("{path}: {reason}")]
    Garbled { path: PathBuf, reason: String },
    /// The node certificate does not chain to `ca.pem` or does not name `node-<id>.quill`.
    #[error("{path}: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    /// rustls refused the certificate, key or settings (e.g. the key does not match).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}
