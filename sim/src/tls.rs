//! Certificates, like a PVE node's: a self-made CA (`pve-root-ca.pem`) and a server
//! certificate signed by it (`pve-ssl.pem`) naming the bind address, `localhost` and the node.
//! The SHA-256 fingerprint of the server certificate (`AA:BB:...`, as `pvenode cert info`
//! prints it) is what clients pin. With a state folder the CA key is kept, so a CA file a
//! client saved stays valid across restarts; the server certificate is reused while its names
//! still fit.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::error::SimError;

/// The TLS material of one simulator.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub fingerprint: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

const CA_FILE: &str = "pve-root-ca.pem";
const CA_KEY_FILE: &str = "pve-root-ca.key";
const CERT_FILE: &str = "pve-ssl.pem";
const KEY_FILE: &str = "pve-ssl.key";
const NAMES_FILE: &str = "pve-ssl.names";

fn tls_err(e: impl std::fmt::Display) -> SimError {
    SimError::Tls(e.to_string())
}

fn ca_params() -> Result<CertificateParams, SimError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    p.distinguished_name
        .push(DnType::CommonName, "pvesim Root CA");
    p.distinguished_name
        .push(DnType::OrganizationName, "PVE Cluster Manager CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Builds (or loads from `dir`) the CA and server certificate for `ip` and `node`.
pub(crate) fn material(
    dir: Option<&Path>,
    ip: IpAddr,
    node: &str,
    others: &[IpAddr],
) -> Result<TlsMaterial, SimError> {
    // A cluster's nodes share one certificate here (PVE gives each its own, signed by the
    // cluster's CA): it names every node's address.
    let mut names = format!("{ip} localhost {node}");
    for o in others {
        names.push_str(&format!(" {o}"));
    }
    let ca_key = match dir.map(|d| d.join(CA_KEY_FILE)).filter(|p| p.exists()) {
        Some(p) => {
            let pem = std::fs::read_to_string(&p).map_err(|e| SimError::io(&p, e))?;
            KeyPair::from_pem(&pem).map_err(tls_err)?
        }
        None => KeyPair::generate().map_err(tls_err)?,
    };
    let ca_params = ca_params()?;
    // Re-signing the CA from the same key and name keeps clients that trust the old file happy:
    // they match the issuer by name and key, not by this exact certificate.
    let ca_pem = match dir.map(|d| d.join(CA_FILE)).filter(|p| p.exists()) {
        Some(p) => std::fs::read_to_string(&p).map_err(|e| SimError::io(&p, e))?,
        None => ca_params.self_signed(&ca_key).map_err(tls_err)?.pem(),
    };

    let reuse = dir.and_then(|d| {
        let same = std::fs::read_to_string(d.join(NAMES_FILE)).ok()? == names;
        let cert = std::fs::read_to_string(d.join(CERT_FILE)).ok()?;
        let key = std::fs::read_to_string(d.join(KEY_FILE)).ok()?;
        same.then_some((cert, key))
    });
    let (cert_pem, key_pem) = match reuse {
        Some(pair) => pair,
        None => {
            let mut p = CertificateParams::new(vec!["localhost".to_string(), node.to_string()])
                .map_err(tls_err)?;
            p.subject_alt_names.push(SanType::IpAddress(ip));
            for o in others {
                p.subject_alt_names.push(SanType::IpAddress(*o));
            }
            p.distinguished_name.push(DnType::CommonName, node);
            p.distinguished_name
                .push(DnType::OrganizationName, "PVE Cluster Node");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().map_err(tls_err)?;
            let issuer = Issuer::new(ca_params, &ca_key);
            let cert = p.signed_by(&key, &issuer).map_err(tls_err)?;
            (cert.pem(), key.serialize_pem())
        }
    };

    if let Some(d) = dir {
        write_private(&d.join(CA_KEY_FILE), &ca_key.serialize_pem())?;
        write_file(&d.join(CA_FILE), &ca_pem)?;
        write_file(&d.join(CERT_FILE), &cert_pem)?;
        write_private(&d.join(KEY_FILE), &key_pem)?;
        write_file(&d.join(NAMES_FILE), &names)?;
    }

    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(tls_err)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(tls_err)?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(tls_err)?;
    let fingerprint = fingerprint_of(&cert_der);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der, ca_der], key_der)
        .map_err(tls_err)?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(TlsMaterial {
        ca_pem,
        cert_pem,
        fingerprint,
        server_config: Arc::new(server_config),
    })
}

/// SHA-256 of a DER certificate as upper-case hex pairs joined by `:`.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), SimError> {
    atomic_write(path, text.as_bytes(), false)
}

pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), SimError> {
    atomic_write(path, text.as_bytes(), true)
}

/// Temp file + rename, so a reader never sees half a file; `private` makes it 0600.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8], private: bool) -> Result<(), SimError> {
    use std::io::Write;
    // Its own temp name per process: two processes writing the same file never share one.
    let tmp = path.with_extension(format!(
        "{}.tmp.{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(|e| SimError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| SimError::io(&tmp, e))?;
    // No fsync: the rename keeps readers from seeing half a file, and a simulator's state
    // need not survive a power cut. Saving runs under the state lock after every change, so
    // it must stay cheap.
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| SimError::io(path, e))
}
