//! `GET /spec/{identity}` (and, for a `pve` node in pull mode, `GET /config/{identity}`)
//! from the controller, the certificate pinned by fingerprint (the controller's is
//! self-signed), the token as a bearer when the posture wants one.

use std::time::Duration;

use crate::pve::tls::{client_config, FingerprintMismatch, TlsError, TlsTrust};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{url}: {message}")]
    Connect { url: String, message: String },
    #[error("{url}: the controller's certificate is not the pinned one ({0})", .mismatch)]
    Mismatch {
        url: String,
        mismatch: FingerprintMismatch,
    },
    #[error("{url}: the controller wants a token for this node (401)")]
    NoToken { url: String },
    #[error("{url}: the controller refused the token (403)")]
    Refused { url: String },
    #[error("{url}: the controller has no {what} for '{identity}' (404)")]
    Unknown {
        url: String,
        what: &'static str,
        identity: String,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the answer is not a {what}: {message}")]
    NotASpec {
        url: String,
        what: &'static str,
        message: String,
    },
}

/// The spec of `identity` as JSON text, checked to be a JSON object.
pub async fn fetch(
    server: &str,
    identity: &str,
    token: Option<&str>,
    trust: &TlsTrust,
) -> Result<String, FetchError> {
    get(server, "spec", identity, token, trust).await
}

/// The config of `pve` node `identity` (`engine::site_config::pve_config::config_doc`'s
/// shape) as JSON text, checked to be a JSON object.
pub async fn fetch_config(
    server: &str,
    identity: &str,
    token: Option<&str>,
    trust: &TlsTrust,
) -> Result<String, FetchError> {
    get(server, "config", identity, token, trust).await
}

/// `GET /{what}/{identity}`.
async fn get(
    server: &str,
    what: &'static str,
    identity: &str,
    token: Option<&str>,
    trust: &TlsTrust,
) -> Result<String, FetchError> {
    let url = format!("{}/{what}/{identity}", server.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(trust)?)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| FetchError::Connect {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let mut req = http.get(&url);
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| match FingerprintMismatch::find(&e) {
            Some(mismatch) => FetchError::Mismatch {
                url: url.clone(),
                mismatch,
            },
            None => FetchError::Connect {
                url: url.clone(),
                message: crate::pve::client::chain(&e),
            },
        })?;
    match resp.status().as_u16() {
        200 => {}
        401 => return Err(FetchError::NoToken { url }),
        403 => return Err(FetchError::Refused { url }),
        404 => {
            return Err(FetchError::Unknown {
                url,
                what,
                identity: identity.to_string(),
            })
        }
        status => return Err(FetchError::Status { url, status }),
    }
    let text = resp.text().await.map_err(|e| FetchError::Connect {
        url: url.clone(),
        message: e.to_string(),
    })?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.is_object() => Ok(text),
        Ok(_) => Err(FetchError::NotASpec {
            url,
            what,
            message: "not a JSON object".into(),
        }),
        Err(e) => Err(FetchError::NotASpec {
            url,
            what,
            message: e.to_string(),
        }),
    }
}
