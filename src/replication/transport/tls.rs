//! Mutual TLS between brokers (`docs/REPLICATION.md`, "TLS"): loading a node's files, the
//! rustls configurations quinn runs on, and the rule that gives an accepted connection its node
//! id: the one its certificate names, never anything the peer says.
//!
//! Every node has a certificate signed by the cluster CA naming `node-<id>.quill` (DNS SAN) with
//! both the server and the client usage. A dialer checks the server's certificate against the CA
//! and the name of the node it dialed; the acceptor requires a client certificate from the CA
//! naming exactly one node of its peers map (not itself).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
};

use super::error::TlsError;
use super::frame::ALPN;
use crate::types::NodeId;

/// The CA certificate's file name in a TLS directory.
pub const CA_FILE: &str = "ca.pem";
/// The CA key's file name (only `init-certs` writes it; brokers never read it).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// The DNS name a node's certificate carries: `node-<id>.quill`.
pub fn node_name(node: NodeId) -> String {
    format!("node-{}.quill", node.0)
}

/// `DIR/ca.pem`.
pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join(CA_FILE)
}

/// `DIR/node-<id>.pem`: the node's certificate (then any intermediates).
pub fn cert_path(dir: &Path, node: NodeId) -> PathBuf {
    dir.join(format!("node-{}.pem", node.0))
}

/// `DIR/node-<id>-key.pem`: the node's private key (PKCS#8, mode 0600).
pub fn key_path(dir: &Path, node: NodeId) -> PathBuf {
    dir.join(format!("node-{}-key.pem", node.0))
}

/// The crypto provider every configuration here uses (aws-lc-rs, rustls' default, named
/// explicitly because quinn enables ring too and rustls would then not choose).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A node's TLS material, checked to fit together: the CA, and this node's certificate chain and
/// key. Loaded on the broker's main thread and moved into the transport.
pub struct TlsFiles {
    node: NodeId,
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsFiles {
    fn clone(&self) -> Self {
        TlsFiles {
            node: self.node,
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("node", &self.node)
            .field("ca_certificates", &self.ca.len())
            .field("chain_certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads `DIR/ca.pem`, `DIR/node-<id>.pem` and `DIR/node-<id>-key.pem` and checks that the
    /// certificate chains to the CA, names `node-<id>.quill` and matches the key.
    pub fn load(dir: &Path, node: NodeId) -> Result<Self, TlsError> {
        let ca = read_certs(&ca_path(dir))?;
        let chain = read_certs(&cert_path(dir, node))?;
        let key_file = key_path(dir, node);
        let key_pem = read(&key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Garbled {
            path: key_file.clone(),
            reason: format!("no PEM private key in it ({e})"),
        })?;
        let files = TlsFiles {
            node,
            ca,
            chain,
            key,
        };
        files.check(dir)?;
        Ok(files)
    }

    /// The node these files are for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    fn check(&self, dir: &Path) -> Result<(), TlsError> {
        let cert_file = cert_path(dir, self.node);
        let bad = |path: &Path, reason: String| TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason,
        };
        let roots = self
            .roots()
            .map_err(|e| bad(&ca_path(dir), e.to_string()))?;
        let parsed = ParsedCertificate::try_from(&self.chain[0])
            .map_err(|e| bad(&cert_file, format!("not a certificate: {e}")))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &self.chain[1..],
            UnixTime::now(),
            provider().signature_verification_algorithms.all,
        )
        .map_err(|e| bad(&cert_file, format!("not signed by {CA_FILE}: {e}")))?;
        let name = node_name(self.node);
        let server_name = ServerName::try_from(name.clone()).expect("node names are DNS names");
        rustls::client::verify_server_name(&parsed, &server_name)
            .map_err(|e| bad(&cert_file, format!("does not name {name}: {e}")))?;
        rustls::sign::CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), &provider())
            .map_err(|e| {
                bad(
                    &key_path(dir, self.node),
                    format!("does not fit {}: {e}", cert_file.display()),
                )
            })?;
        Ok(())
    }

    fn roots(&self) -> Result<RootCertStore, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone())?;
        }
        Ok(roots)
    }

    /// The client side: presents this node's certificate, trusts only the CA, offers the ALPN.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut c = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        c.alpn_protocols = vec![ALPN.to_vec()];
        Ok(c)
    }

    /// The server side: presents this node's certificate and admits only clients whose
    /// certificate the CA signed and that name one node of `peers` other than this one.
    pub fn server_config(
        &self,
        peers: impl IntoIterator<Item = NodeId>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let inner =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = NodeVerifier {
            inner,
            peers: peers.into_iter().filter(|p| *p != self.node).collect(),
        };
        let mut c = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        c.alpn_protocols = vec![ALPN.to_vec()];
        Ok(c)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing {
            path: path.to_path_buf(),
        },
        _ => TlsError::Read {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Garbled {
            path: path.to_path_buf(),
            reason: format!("not PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Garbled {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE in it".into(),
        });
    }
    Ok(certs)
}

/// The one node of `candidates` that `cert` names, or why there is none.
pub fn node_of_certificate(
    cert: &CertificateDer<'_>,
    candidates: impl IntoIterator<Item = NodeId>,
) -> Result<NodeId, String> {
    let parsed =
        ParsedCertificate::try_from(cert).map_err(|e| format!("not a certificate: {e}"))?;
    let named: Vec<NodeId> = candidates
        .into_iter()
        .filter(|n| {
            let name = ServerName::try_from(node_name(*n)).expect("node names are DNS names");
            rustls::client::verify_server_name(&parsed, &name).is_ok()
        })
        .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err("the certificate names no node of this node's peers".into()),
        _ => Err(format!("the certificate names several nodes: {named:?}")),
    }
}

/// The node an established connection's client certificate names (the verifier already
/// admitted it, so this only reads the name back).
pub(crate) fn peer_node(
    conn: &quinn::Connection,
    candidates: impl IntoIterator<Item = NodeId>,
) -> Result<NodeId, String> {
    let identity = conn
        .peer_identity()
        .ok_or_else(|| "no peer certificate".to_string())?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "peer identity is not a certificate chain".to_string())?;
    let end = chain.first().ok_or("empty peer certificate chain")?;
    node_of_certificate(end, candidates)
}

/// The CA check of rustls' verifier, then the node rule.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    peers: BTreeSet<NodeId>,
}

/// The reason a CA-signed certificate is still refused (shown in the handshake error).
#[derive(Debug)]
struct NodeRefused(String);

impl fmt::Display for NodeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeRefused {}

impl ClientCertVerifier for NodeVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        node_of_certificate(end_entity, self.peers.iter().copied()).map_err(|reason| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                NodeRefused(reason),
            ))))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
