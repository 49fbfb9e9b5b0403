//! `quill cluster init-certs`: a cluster CA and one certificate per node, made with rcgen
//! (`docs/REPLICATION.md`, "Certificates").

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::tls::{ca_path, cert_path, key_path, node_name, CA_KEY_FILE};
use crate::types::NodeId;

/// How long the certificates `init-certs` makes are valid, in years from January 1 of this year.
pub const CERT_VALIDITY_YEARS: i32 = 10;

/// The most nodes one `init-certs` makes certificates for.
pub const INIT_CERTS_NODES_MAX: u32 = 1000;

/// Why `init-certs` wrote nothing (or stopped part way through an I/O error).
#[derive(Debug, thiserror::Error)]
pub enum InitCertsError {
    #[error("nodes {0} not in 1..={INIT_CERTS_NODES_MAX}")]
    Nodes(u32),
    #[error("refusing to overwrite {} (pass --force to replace them): {}", .0.len(), list(.0))]
    Exists(Vec<PathBuf>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every file `init-certs` writes for `nodes` nodes, keys marked.
pub fn init_certs_files(dir: &Path, nodes: u32) -> Vec<(PathBuf, bool)> {
    let mut files = vec![(ca_path(dir), false), (dir.join(CA_KEY_FILE), true)];
    for id in 1..=nodes {
        files.push((cert_path(dir, NodeId(id)), false));
        files.push((key_path(dir, NodeId(id)), true));
    }
    files
}

/// Writes `DIR/ca.pem`, `DIR/ca-key.pem`, and `DIR/node-<id>.pem`, `DIR/node-<id>-key.pem` for
/// ids `1..=nodes` (keys mode 0600), creating `DIR` if needed. Refuses, writing nothing, if any
/// of them exists and `force` is false. Returns the paths written.
pub fn init_certs(dir: &Path, nodes: u32, force: bool) -> Result<Vec<PathBuf>, InitCertsError> {
    if nodes == 0 || nodes > INIT_CERTS_NODES_MAX {
        return Err(InitCertsError::Nodes(nodes));
    }
    let files = init_certs_files(dir, nodes);
    if !force {
        let existing: Vec<PathBuf> = files
            .iter()
            .filter(|(p, _)| p.symlink_metadata().is_ok())
            .map(|(p, _)| p.clone())
            .collect();
        if !existing.is_empty() {
            return Err(InitCertsError::Exists(existing));
        }
    }
    let pems = generate(nodes)?;
    std::fs::create_dir_all(dir).map_err(|source| InitCertsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for ((path, secret), pem) in files.iter().zip(pems) {
        write_file(path, pem.as_bytes(), *secret)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// PEM texts in the order of [`init_certs_files`].
fn generate(nodes: u32) -> Result<Vec<String>, rcgen::Error> {
    let year = current_year();
    let validity = |p: &mut CertificateParams| {
        p.not_before = rcgen::date_time_ymd(year, 1, 1);
        p.not_after = rcgen::date_time_ymd(year + CERT_VALIDITY_YEARS, 1, 1);
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Quill cluster CA");
    validity(&mut ca_params);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut pems = vec![ca_cert.pem(), ca_key.serialize_pem()];
    let issuer = Issuer::new(ca_params, ca_key);
    for id in 1..=nodes {
        let name = node_name(NodeId(id));
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.clone()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        validity(&mut params);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        pems.push(cert.pem());
        pems.push(key.serialize_pem());
    }
    Ok(pems)
}

/// The current UTC year (civil calendar from days since 1970, H. Hinnant's algorithm).
fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2)) as i32
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), InitCertsError> {
    let io = |source| InitCertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    // `mode` applies only to a new file: an overwritten key must not keep looser bits.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::transport::tls::TlsFiles;

    #[test]
    fn made_files_load_and_each_names_its_node() {
        let dir = tempfile::tempdir().unwrap();
        init_certs(dir.path(), 2, false).unwrap();
        for id in 1..=2 {
            let f = TlsFiles::load(dir.path(), NodeId(id)).unwrap();
            assert_eq!(f.node(), NodeId(id));
        }
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(key_path(dir.path(), NodeId(1))), 0o600);
        assert_eq!(mode(dir.path().join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(ca_path(dir.path())), 0o644);
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        init_certs(dir.path(), 1, false).unwrap();
        let before = std::fs::read(ca_path(dir.path())).unwrap();
        let e = init_certs(dir.path(), 2, false).unwrap_err();
        assert!(
            matches!(&e, InitCertsError::Exists(p) if p.len() == 4),
            "{e}"
        );
        assert!(
            !cert_path(dir.path(), NodeId(2)).exists(),
            "nothing written"
        );
        assert_eq!(std::fs::read(ca_path(dir.path())).unwrap(), before);
        init_certs(dir.path(), 2, true).unwrap();
        assert_ne!(std::fs::read(ca_path(dir.path())).unwrap(), before);
    }

    #[test]
    fn load_names_the_file_that_is_wrong() {
        use crate::replication::transport::error::TlsError;
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        init_certs(dir.path(), 2, false).unwrap();
        init_certs(other.path(), 2, false).unwrap();
        let e = TlsFiles::load(dir.path(), NodeId(3)).unwrap_err();
        assert!(
            matches!(&e, TlsError::Missing { path } if path.ends_with("node-3.pem")),
            "{e}"
        );
        // Node 1's certificate under node 2's name: wrong name.
        std::fs::copy(
            cert_path(dir.path(), NodeId(1)),
            cert_path(dir.path(), NodeId(2)),
        )
        .unwrap();
        let e = TlsFiles::load(dir.path(), NodeId(2)).unwrap_err();
        assert!(e.to_string().contains("does not name node-2.quill"), "{e}");
        // Another cluster's certificate: not signed by this CA.
        std::fs::copy(
            cert_path(other.path(), NodeId(1)),
            cert_path(dir.path(), NodeId(1)),
        )
        .unwrap();
        let e = TlsFiles::load(dir.path(), NodeId(1)).unwrap_err();
        assert!(e.to_string().contains("not signed by ca.pem"), "{e}");
        // The right certificate with another node's key.
        init_certs(dir.path(), 2, true).unwrap();
        std::fs::copy(
            key_path(dir.path(), NodeId(2)),
            key_path(dir.path(), NodeId(1)),
        )
        .unwrap();
        let e = TlsFiles::load(dir.path(), NodeId(1)).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        std::fs::write(key_path(dir.path(), NodeId(1)), "garbage").unwrap();
        let e = TlsFiles::load(dir.path(), NodeId(1)).unwrap_err();
        assert!(
            matches!(&e, TlsError::Garbled { path, .. } if path.ends_with("node-1-key.pem")),
            "{e}"
        );
        std::fs::write(ca_path(dir.path()), "").unwrap();
        let e = TlsFiles::load(dir.path(), NodeId(1)).unwrap_err();
        assert!(
            matches!(&e, TlsError::Garbled { path, .. } if path.ends_with("ca.pem")),
            "{e}"
        );
    }
}
