//! How the PVE client trusts a host's certificate: a CA file, a pinned
//! SHA-256 fingerprint (PVE's self-signed default), or nothing at all, only
//! when the host's config says `insecure: true` explicitly.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsTrust {
    /// Verify the chain and name against this CA (PEM).
    CaFile(PathBuf),
    /// Accept exactly the certificate with this SHA-256 fingerprint.
    Fingerprint([u8; 32]),
    /// Accept anything (a warning is logged once per client).
    Insecure,
}

/// The host's certificate is not the pinned one: deterministic, so never
/// retried; the usual cause is a renewed certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("certificate fingerprint {got} does not match the pinned {pinned}")]
pub struct FingerprintMismatch {
    pub got: String,
    pub pinned: String,
}

impl FingerprintMismatch {
    /// The mismatch somewhere in an error's chain (reqwest wraps hyper,
    /// which wraps an io::Error, which holds rustls's error, which holds ours).
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<FingerprintMismatch> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(m) = err.downcast_ref::<FingerprintMismatch>() {
                return Some(m.clone());
            }
            if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) =
                err.downcast_ref::<rustls::Error>()
            {
                if let Some(m) = o.0.downcast_ref::<FingerprintMismatch>() {
                    return Some(m.clone());
                }
            }
            // io::Error's source() skips the error it holds: look inside.
            if let Some(inner) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                if let Some(m) = Self::find(inner) {
                    return Some(m);
                }
            }
            cur = err.source();
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("'{0}' is not a SHA-256 fingerprint (expected 32 hex bytes, e.g. AB:CD:...)")]
    BadFingerprint(String),
    #[error("cannot read CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// Parses `AB:CD:...` or `abcd...` (PVE shows the former).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], TlsError> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bad = || TlsError::BadFingerprint(s.to_string());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// `AB:CD:...`, as PVE prints fingerprints.
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn sha256(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client config for this trust mode.
pub fn client_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let config = match trust {
        TlsTrust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| TlsError::CaFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for c in certs {
                let c = c.map_err(|e| TlsError::CaFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                roots.add(c).map_err(|e| TlsError::CaFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsTrust::Fingerprint(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: *fp,
                insecure: false,
                provider: provider(),
            }))
            .with_no_client_auth(),
        TlsTrust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: [0; 32],
                insecure: true,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Checks the leaf certificate's fingerprint (or nothing, when insecure);
/// handshake signatures are still verified, so the peer holds the key.
#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    insecure: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let got = sha256(end_entity.as_ref());
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    FingerprintMismatch {
                        got: format_fingerprint(&got),
                        pinned: format_fingerprint(&self.fingerprint),
                    },
                ))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_both_ways() {
        let s = "AB:".repeat(31) + "AB";
        let fp = parse_fingerprint(&s).unwrap();
        assert_eq!(fp, [0xAB; 32]);
        assert_eq!(format_fingerprint(&fp), s);
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).unwrap(), [0xAB; 32]);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
