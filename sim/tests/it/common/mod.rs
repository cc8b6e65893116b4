//! A small PVE API client for the tests: HTTP/1.1 over rustls (ring), one connection per
//! request, the server certificate pinned by SHA-256 fingerprint (or verified against the
//! simulator's CA), form-encoded bodies as PVE clients send them. Keeps the reason phrase,
//! which PVE uses to carry the error message.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sim::{SimConfig, SimHandle};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

fn sha256_colon(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256_colon(end_entity.as_ref()) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("fingerprint mismatch".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[derive(Clone)]
pub enum Auth {
    None,
    Header(String),
    Ticket {
        ticket: String,
        csrf: Option<String>,
    },
}

#[derive(Clone)]
pub struct Client {
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    pub auth: Auth,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub body: Value,
}

impl Resp {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected 200, got {self:?}");
        self.data()
    }
    pub fn upid(&self) -> String {
        self.ok().as_str().expect("a UPID string").to_string()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Client {
    /// Pins the certificate's fingerprint, authenticates with the simulator's token.
    pub fn pinned(h: &SimHandle) -> Client {
        Client::pinned_to(h, h.fingerprint())
    }

    pub fn pinned_to(h: &SimHandle, fingerprint: &str) -> Client {
        Client::pinned_at(
            h.addr(),
            fingerprint,
            Auth::Header(h.token().header_value()),
        )
    }

    /// Any PVE-like server (fakepve) at `addr` whose certificate has `fingerprint`
    /// (`AB:CD:...`, or bare hex in either case).
    pub fn pinned_at(addr: std::net::SocketAddr, fingerprint: &str, auth: Auth) -> Client {
        let fingerprint = if fingerprint.contains(':') {
            fingerprint.to_ascii_uppercase()
        } else {
            fingerprint
                .to_ascii_uppercase()
                .as_bytes()
                .chunks(2)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join(":")
        };
        let p = provider();
        let verifier = Arc::new(Pinned {
            fingerprint,
            provider: p.clone(),
        });
        let cfg = rustls::ClientConfig::builder_with_provider(p)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Client {
            addr,
            tls: Arc::new(cfg),
            auth,
        }
    }

    /// Verifies the server against the simulator's CA (and the IP in its certificate).
    pub fn with_ca(h: &SimHandle) -> Client {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(h.ca_pem().as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            addr: h.addr(),
            tls: Arc::new(cfg),
            auth: Auth::Header(h.token().header_value()),
        }
    }

    pub fn with_auth(&self, auth: Auth) -> Client {
        Client {
            auth,
            ..self.clone()
        }
    }

    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<Resp, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let uri = if path.starts_with("/sim") {
            path.to_string()
        } else {
            format!("/api2/json{path}")
        };
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", self.addr.to_string());
        match &self.auth {
            Auth::None => {}
            Auth::Header(h) => b = b.header("authorization", h),
            Auth::Ticket { ticket, csrf } => {
                b = b.header("cookie", format!("PVEAuthCookie={}", encode(ticket)));
                if let Some(c) = csrf {
                    b = b.header("CSRFPreventionToken", c);
                }
            }
        }
        let body = match body {
            Some((ctype, text)) => {
                b = b.header("content-type", ctype);
                Full::new(Bytes::from(text))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = sender
            .send_request(b.body(body).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).to_string())
            .unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").to_string());
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            reason,
            body,
        })
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Resp {
        self.try_request(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let body = Some(("application/x-www-form-urlencoded", form(pairs)));
        self.request("POST", path, body).await
    }

    pub async fn put(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let body = Some(("application/x-www-form-urlencoded", form(pairs)));
        self.request("PUT", path, body).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None).await
    }

    pub async fn post_json(&self, path: &str, json: &Value) -> Resp {
        self.request("POST", path, Some(("application/json", json.to_string())))
            .await
    }

    /// Follows a task until it stops (at most `limit`); returns its final status.
    pub async fn wait_task(&self, node: &str, upid: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let r = self
                .get(&format!("/nodes/{node}/tasks/{}/status", encode(upid)))
                .await;
            let st = r.ok().clone();
            if st["status"] == "stopped" {
                return st;
            }
            assert!(Instant::now() < deadline, "task {upid} still running: {st}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn task_log(&self, node: &str, upid: &str) -> Vec<String> {
        let r = self
            .get(&format!("/nodes/{node}/tasks/{}/log?limit=0", encode(upid)))
            .await;
        r.ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["t"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A simulator on a loopback address with a free port, time scale 0.
pub async fn start(cfg: SimConfig) -> (SimHandle, Client) {
    let h = sim::PveSim::start(cfg).await.expect("pvesim starts");
    let c = Client::pinned(&h);
    (h, c)
}

/// Guest SSH servers on ports of their own (0), so simulators of tests running side by side
/// never compete for an address and nothing needs root.
pub fn config() -> SimConfig {
    SimConfig {
        guest_ssh_port: 0,
        ..SimConfig::default()
    }
}
