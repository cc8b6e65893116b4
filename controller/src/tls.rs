//! The controller's certificate: the operator's (`--cert`/`--key`, PEM) or a self-signed one
//! made at start (kept in memory only, so every start has a new one), and its SHA-256
//! fingerprint (`AA:BB:...`), which nodes pin because nothing signed it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{rustls, TlsAcceptor};

use crate::ControllerError;

/// Where the served certificate came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertOrigin {
    SelfSigned,
    File(PathBuf),
}

pub(crate) struct Material {
    pub acceptor: TlsAcceptor,
    pub fingerprint: String,
    pub origin: CertOrigin,
}

fn tls_err(e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Tls(e.to_string())
}

/// SHA-256 of a DER certificate as upper-case hex pairs joined by `:`.
pub(crate) fn fingerprint_of(der: &[u8]) -> String {
    crate::auth::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn material(
    files: Option<&(PathBuf, PathBuf)>,
    ip: IpAddr,
) -> Result<Material, ControllerError> {
    let (chain, key, origin) = match files {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_err(format!("{}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(tls_err(format!("{}: no certificate in it", cert.display())));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_err(format!("{}: {e}", key.display())))?;
            (chain, key_der, CertOrigin::File(cert.clone()))
        }
        None => {
            let mut names = vec!["localhost".to_string(), ip.to_string()];
            if let Some(h) = hostname() {
                names.push(h);
            }
            let made = rcgen::generate_simple_self_signed(names).map_err(tls_err)?;
            let key_der =
                PrivateKeyDer::from_pem_slice(made.signing_key.serialize_pem().as_bytes())
                    .map_err(tls_err)?;
            (
                vec![made.cert.der().clone()],
                key_der,
                CertOrigin::SelfSigned,
            )
        }
    };
    let fingerprint = fingerprint_of(&chain[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Material {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        origin,
    })
}

/// The machine's name, for the certificate (nodes reach the controller by name or address).
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && engine::site_config::plain_name(h)).then(|| h.to_string())
}
