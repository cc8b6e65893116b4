//! The release listing: the HTTP client (rustls on ring, platform roots),
//! GitHub's release-by-tag shape and its assets, and the GETs and transfer
//! errors the other steps share.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DownloadError, ReleaseSource};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub name: String,
    #[serde(default)]
    pub size: u64,
    pub browser_download_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub tag_name: String,
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// An HTTP client: rustls on ring, platform roots, connect and stall limits.
pub fn http_client() -> Result<reqwest::Client, DownloadError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| DownloadError::Client(e.to_string()))?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("driver/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        // A stalled transfer errors out (and is resumed) instead of hanging.
        .read_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| DownloadError::Client(e.to_string()))
}

/// `GET {api}/repos/{repo}/releases/tags/{tag}`.
pub async fn fetch_release(
    client: &reqwest::Client,
    source: &ReleaseSource,
    tag: &str,
) -> Result<Release, DownloadError> {
    let url = format!(
        "{}/repos/{}/releases/tags/{}",
        source.api_base.trim_end_matches('/'),
        source.repo,
        tag
    );
    let mut req = client
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/vnd.github+json");
    if let Some(t) = &source.token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.map_err(|e| transfer(&url, e))?;
    match resp.status().as_u16() {
        200 => {}
        404 => {
            return Err(DownloadError::ReleaseNotFound {
                repo: source.repo.clone(),
                tag: tag.to_string(),
            })
        }
        s => return Err(DownloadError::Http { url, status: s }),
    }
    let body = resp.bytes().await.map_err(|e| transfer(&url, e))?;
    serde_json::from_slice(&body).map_err(|e| DownloadError::BadListing(e.to_string()))
}

pub(super) fn transfer(url: &str, e: reqwest::Error) -> DownloadError {
    // reqwest's Display omits the cause (e.g. "connection reset").
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    DownloadError::Transfer {
        url: url.to_string(),
        message,
    }
}

pub(super) async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, DownloadError> {
    let resp = client.get(url).send().await.map_err(|e| transfer(url, e))?;
    if !resp.status().is_success() {
        return Err(DownloadError::Http {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    resp.text().await.map_err(|e| transfer(url, e))
}
