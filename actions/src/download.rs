//! Release-image download (the seed's DownloadGitHubReleaseAction).
//!
//! 1. The tag: CLI `--packer-release`, else site.yaml
//!    `defaults.packer_release`, else `latest` (a real tag the packer release
//!    process moves), see [`resolve_tag`].
//! 2. Skip when the image is already in the destination directory.
//! 3. The release's asset list (GitHub's REST shape, from a configurable
//!    API base so tests use a local server): the image itself, or split
//!    parts `image.partaa`, `image.partab`, ... (images over 2 GB), see
//!    [`split_parts`].
//! 4. Each part is downloaded to `dest/{part}.download` with HTTP Range
//!    resume: an interrupted transfer (or an earlier run) continues where it
//!    stopped; progress is reported through a callback (the CLI draws a bar).
//! 5. When the release publishes checksums (`SHA256SUMS`, `sha256sums.txt`,
//!    `checksums.txt`, `{image}.sha256`), every listed part and the
//!    assembled image are verified; a part that fails is downloaded again
//!    once from scratch, then the run fails naming it.
//! 6. Parts are concatenated into a temporary file, renamed into place
//!    (atomic), and the parts removed.
//!
//! HTTPS uses rustls with the *ring* provider and the platform's roots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use engine::secrets::Secret;

/// `DownloadGitHubReleaseAction.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_API_BASE: &str = "https://api.github.com";
/// Where homestak's packer images are released.
pub const DEFAULT_REPO: &str = "homestak-dev/packer";
/// Attempts per part (the first included) when the connection drops.
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// The tag to use: CLI, else site default, else `latest`.
pub fn resolve_tag(cli: Option<&str>, site_default: Option<&str>) -> String {
    [cli, site_default]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("latest")
        .to_string()
}

/// Where releases are listed.
#[derive(Clone, Debug)]
pub struct ReleaseSource {
    /// e.g. `https://api.github.com` (no trailing slash needed).
    pub api_base: String,
    /// `owner/name`.
    pub repo: String,
    /// Optional API token (rate limits, private repos); never logged.
    pub token: Option<Secret<String>>,
}

impl Default for ReleaseSource {
    fn default() -> Self {
        ReleaseSource {
            api_base: DEFAULT_API_BASE.into(),
            repo: DEFAULT_REPO.into(),
            token: None,
        }
    }
}

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

/// One image to fetch.
#[derive(Clone, Debug)]
pub struct ImageDownload {
    pub source: ReleaseSource,
    /// From [`resolve_tag`].
    pub tag: String,
    /// The image's file name, e.g. `debian-13-pve.qcow2`.
    pub image: String,
    /// e.g. `/var/lib/vz/template/iso`.
    pub dest_dir: PathBuf,
    /// Whole operation.
    pub timeout: Duration,
    pub attempts: u32,
    /// Download even if the image exists.
    pub force: bool,
}

impl ImageDownload {
    pub fn new(
        source: ReleaseSource,
        tag: impl Into<String>,
        image: impl Into<String>,
        dest_dir: impl Into<PathBuf>,
    ) -> Self {
        ImageDownload {
            source,
            tag: tag.into(),
            image: image.into(),
            dest_dir: dest_dir.into(),
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            force: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Downloading,
    Verifying,
    Assembling,
    Done,
}

/// What the progress callback gets (often: once per received chunk).
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub image: String,
    pub phase: Phase,
    /// 1-based part being fetched, of `parts`.
    pub part: usize,
    pub parts: usize,
    /// Bytes on disk so far, all parts (resumed bytes included).
    pub bytes_done: u64,
    /// Sum of the asset sizes the release lists.
    pub bytes_total: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DownloadOutcome {
    pub path: PathBuf,
    /// The image was already there: nothing fetched.
    pub skipped: bool,
    pub tag: String,
    pub parts: usize,
    pub bytes: u64,
    /// Files whose SHA-256 matched the published checksums.
    pub verified: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("release '{tag}' of {repo} not found")]
    ReleaseNotFound { repo: String, tag: String },
    #[error("release '{tag}' has no asset '{image}' (nor split parts {image}.partaa, ...); assets: {available}")]
    AssetNotFound {
        tag: String,
        image: String,
        available: String,
    },
    #[error("split parts of {image} are not contiguous: after {after} comes {next}")]
    PartsGap {
        image: String,
        after: String,
        next: String,
    },
    #[error("GET {url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("GET {url}: {message}")]
    Transfer { url: String, message: String },
    #[error("{file}: SHA-256 mismatch (expected {expected}, got {actual})")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: size {actual} differs from the release's {expected}")]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("download of {image} timed out after {}s", after.as_secs())]
    Timeout { image: String, after: Duration },
    #[error("bad release listing: {0}")]
    BadListing(String),
    #[error("HTTP client setup failed: {0}")]
    Client(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |e| DownloadError::Io {
        path: path.to_path_buf(),
        source: e,
    }
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

fn transfer(url: &str, e: reqwest::Error) -> DownloadError {
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

/// The assets making up `image`: itself, or its split parts in order
/// (`.partaa`, `.partab`, ...; a missing letter pair is an error).
pub fn split_parts<'a>(
    assets: &'a [Asset],
    image: &str,
) -> Result<Option<Vec<&'a Asset>>, DownloadError> {
    if let Some(a) = assets.iter().find(|a| a.name == image) {
        return Ok(Some(vec![a]));
    }
    let prefix = format!("{image}.part");
    let mut parts: Vec<&Asset> = assets
        .iter()
        .filter(|a| {
            a.name
                .strip_prefix(&prefix)
                .is_some_and(|s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase()))
        })
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    // `split` names parts aa, ab, ... az, ba, ...: check none is missing.
    for (i, p) in parts.iter().enumerate() {
        let want = format!(
            "{prefix}{}{}",
            (b'a' + (i / 26) as u8) as char,
            (b'a' + (i % 26) as u8) as char
        );
        if p.name != want {
            return Err(DownloadError::PartsGap {
                image: image.to_string(),
                after: if i == 0 {
                    "(start)".into()
                } else {
                    parts[i - 1].name.clone()
                },
                next: p.name.clone(),
            });
        }
    }
    Ok(Some(parts))
}

/// Checksum files we recognize, in order of preference.
fn checksum_asset<'a>(assets: &'a [Asset], image: &str) -> Option<&'a Asset> {
    let names = [
        "SHA256SUMS".to_string(),
        "SHA256SUMS.txt".to_string(),
        "sha256sums.txt".to_string(),
        "sha256sums".to_string(),
        "checksums.txt".to_string(),
        format!("{image}.sha256"),
        format!("{image}.sha256sum"),
    ];
    names
        .iter()
        .find_map(|n| assets.iter().find(|a| &a.name == n))
}

/// `sha256sum` lines (`hex  name`, `hex *name`), BSD lines
/// (`SHA256 (name) = hex`), or a lone hash (for `{default_name}`).
pub fn parse_checksums(text: &str, default_name: &str) -> BTreeMap<String, String> {
    let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(rest) = line.strip_prefix("SHA256 (") {
            if let Some((name, hex)) = rest.split_once(") = ") {
                if is_hex(hex.trim()) {
                    out.insert(name.to_string(), hex.trim().to_ascii_lowercase());
                }
            }
            continue;
        }
        let mut it = line.splitn(2, char::is_whitespace);
        let (Some(hex), rest) = (it.next(), it.next()) else {
            continue;
        };
        if !is_hex(hex) {
            continue;
        }
        let name = rest
            .map(|r| r.trim_start().trim_start_matches('*').trim())
            .filter(|n| !n.is_empty())
            .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
            .unwrap_or_else(|| default_name.to_string());
        out.insert(name, hex.to_ascii_lowercase());
    }
    out
}

/// SHA-256 of a file, hex (on the blocking pool: images are large).
pub async fn sha256_file(path: &Path) -> Result<String, DownloadError> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<String, DownloadError> {
        use std::io::Read;
        let mut f = std::fs::File::open(&p).map_err(io(&p))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io(&p))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    })
    .await
    .map_err(|e| DownloadError::Client(e.to_string()))?
}

/// Downloads `req.image` into `req.dest_dir` (see the module docs).
pub async fn download_image<F>(
    req: &ImageDownload,
    mut on_progress: F,
) -> Result<DownloadOutcome, DownloadError>
where
    F: FnMut(&Progress) + Send,
{
    let fut = download_inner(req, &mut on_progress);
    match tokio::time::timeout(req.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(DownloadError::Timeout {
            image: req.image.clone(),
            after: req.timeout,
        }),
    }
}

async fn download_inner(
    req: &ImageDownload,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<DownloadOutcome, DownloadError> {
    let dest = req.dest_dir.join(&req.image);
    if !req.force {
        if let Ok(m) = tokio::fs::metadata(&dest).await {
            if m.is_file() && m.len() > 0 {
                info!(image = %dest.display(), "image already present; skipping download");
                return Ok(DownloadOutcome {
                    path: dest,
                    skipped: true,
                    tag: req.tag.clone(),
                    parts: 0,
                    bytes: m.len(),
                    verified: Vec::new(),
                });
            }
        }
    }
    tokio::fs::create_dir_all(&req.dest_dir)
        .await
        .map_err(io(&req.dest_dir))?;
    let client = http_client()?;
    let release = fetch_release(&client, &req.source, &req.tag).await?;
    let parts =
        split_parts(&release.assets, &req.image)?.ok_or_else(|| DownloadError::AssetNotFound {
            tag: req.tag.clone(),
            image: req.image.clone(),
            available: release
                .assets
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let split = parts.len() > 1 || parts[0].name != req.image;
    let checksums = match checksum_asset(&release.assets, &req.image) {
        Some(a) => {
            let text = get_text(&client, &a.browser_download_url).await?;
            let sums = parse_checksums(&text, &req.image);
            debug!(file = %a.name, entries = sums.len(), "checksums published");
            Some(sums)
        }
        None => {
            warn!(tag = %req.tag, "release publishes no checksums; {} is not verified", req.image);
            None
        }
    };

    let total: u64 = parts.iter().map(|p| p.size).sum();
    let mut progress = Progress {
        image: req.image.clone(),
        phase: Phase::Downloading,
        part: 0,
        parts: parts.len(),
        bytes_done: 0,
        bytes_total: total,
    };
    let mut verified = Vec::new();
    let mut files = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        progress.part = i + 1;
        let path = req.dest_dir.join(format!("{}.download", part.name));
        let base = progress.bytes_done;
        let expected = checksums.as_ref().and_then(|c| c.get(&part.name));
        let mut fresh_retry_done = false;
        loop {
            fetch_resumable(&client, part, &path, req.attempts, &mut |n| {
                progress.phase = Phase::Downloading;
                progress.bytes_done = base + n;
                on_progress(&progress);
            })
            .await?;
            let Some(expected) = expected else { break };
            progress.phase = Phase::Verifying;
            on_progress(&progress);
            let actual = sha256_file(&path).await?;
            if &actual == expected {
                verified.push(part.name.clone());
                break;
            }
            // A bad transfer is worth one clean retry; a bad asset is not.
            tokio::fs::remove_file(&path).await.map_err(io(&path))?;
            if fresh_retry_done {
                return Err(DownloadError::ChecksumMismatch {
                    file: part.name.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
            warn!(part = %part.name, "checksum mismatch; downloading the part again");
            fresh_retry_done = true;
            progress.bytes_done = base;
        }
        progress.bytes_done = base + part.size;
        files.push(path);
    }

    progress.phase = Phase::Assembling;
    on_progress(&progress);
    let tmp = req.dest_dir.join(format!(".{}.assembling", req.image));
    let bytes = assemble(&files, &tmp).await?;
    if let Some(expected) = checksums.as_ref().and_then(|c| c.get(&req.image)) {
        let actual = sha256_file(&tmp).await?;
        if &actual != expected {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(DownloadError::ChecksumMismatch {
                file: req.image.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        verified.push(req.image.clone());
    } else if checksums.is_some() && verified.is_empty() {
        warn!(image = %req.image, "checksum file lists none of this image's files; not verified");
    }
    tokio::fs::rename(&tmp, &dest).await.map_err(io(&dest))?;
    for f in &files {
        if let Err(e) = tokio::fs::remove_file(f).await {
            warn!(part = %f.display(), error = %e, "cannot remove part");
        }
    }
    progress.phase = Phase::Done;
    on_progress(&progress);
    info!(image = %dest.display(), bytes, parts = files.len(), split, "image downloaded");
    Ok(DownloadOutcome {
        path: dest,
        skipped: false,
        tag: release.tag_name,
        parts: files.len(),
        bytes,
        verified,
    })
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, DownloadError> {
    let resp = client.get(url).send().await.map_err(|e| transfer(url, e))?;
    if !resp.status().is_success() {
        return Err(DownloadError::Http {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    resp.text().await.map_err(|e| transfer(url, e))
}

/// Fetches `asset` into `path`, resuming from what `path` holds, retrying
/// dropped transfers up to `attempts` times. `on_bytes(n)` gets the
/// part's bytes on disk.
async fn fetch_resumable(
    client: &reqwest::Client,
    asset: &Asset,
    path: &Path,
    attempts: u32,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<(), DownloadError> {
    let url = &asset.browser_download_url;
    let mut last: Option<DownloadError> = None;
    for attempt in 1..=attempts.max(1) {
        let mut have = tokio::fs::metadata(path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if asset.size > 0 && have > asset.size {
            have = 0; // not ours: start over
        }
        if asset.size > 0 && have == asset.size {
            on_bytes(have);
            return Ok(());
        }
        on_bytes(have);
        let mut get = client.get(url);
        if have > 0 {
            debug!(part = %asset.name, from = have, "resuming");
            get = get.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let result = async {
            let mut resp = get.send().await.map_err(|e| transfer(url, e))?;
            let status = resp.status().as_u16();
            let append = match status {
                206 => {
                    // Only append if the server resumes where we are.
                    let start = resp
                        .headers()
                        .get(reqwest::header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if start != Some(have) {
                        return Err(DownloadError::Transfer {
                            url: url.clone(),
                            message: format!("server resumed at {start:?}, expected {have}"),
                        });
                    }
                    true
                }
                200 => false, // Range ignored: start over
                416 if have > 0 && asset.size == 0 => return Ok(()), // complete, size unknown
                s => {
                    return Err(DownloadError::Http {
                        url: url.clone(),
                        status: s,
                    })
                }
            };
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(path)
                .await
                .map_err(io(path))?;
            let mut n = if append { have } else { 0 };
            loop {
                let chunk = match resp.chunk().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = file.flush().await;
                        return Err(transfer(url, e));
                    }
                };
                file.write_all(&chunk).await.map_err(io(path))?;
                n += chunk.len() as u64;
                on_bytes(n);
            }
            file.flush().await.map_err(io(path))?;
            file.sync_all().await.map_err(io(path))?;
            if asset.size > 0 && n != asset.size {
                return Err(DownloadError::SizeMismatch {
                    file: asset.name.clone(),
                    expected: asset.size,
                    actual: n,
                });
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            // Retry what a retry can fix: dropped or short transfers, 5xx.
            Err(e @ (DownloadError::Transfer { .. } | DownloadError::SizeMismatch { .. })) => {
                warn!(part = %asset.name, attempt, error = %e, "transfer interrupted; will resume");
                last = Some(e);
            }
            Err(e @ DownloadError::Http { status, .. }) if status >= 500 => {
                warn!(part = %asset.name, attempt, error = %e, "server error; will retry");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
    }
    Err(last.unwrap_or(DownloadError::Transfer {
        url: url.clone(),
        message: "no attempt made".into(),
    }))
}

/// Concatenates `parts` into `out` (on the blocking pool), fsynced.
async fn assemble(parts: &[PathBuf], out: &Path) -> Result<u64, DownloadError> {
    let parts = parts.to_vec();
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<u64, DownloadError> {
        let mut w = std::fs::File::create(&out).map_err(io(&out))?;
        let mut total = 0;
        for p in &parts {
            let mut r = std::fs::File::open(p).map_err(io(p))?;
            total += std::io::copy(&mut r, &mut w).map_err(io(&out))?;
        }
        w.sync_all().map_err(io(&out))?;
        Ok(total)
    })
    .await
    .map_err(|e| DownloadError::Client(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(name: &str) -> Asset {
        Asset {
            name: name.into(),
            size: 1,
            browser_download_url: format!("http://x/{name}"),
        }
    }

    #[test]
    fn tag_resolution_order() {
        assert_eq!(
            resolve_tag(Some("v0.8.0-rc1"), Some("v0.7.0")),
            "v0.8.0-rc1"
        );
        assert_eq!(resolve_tag(None, Some("v0.7.0")), "v0.7.0");
        assert_eq!(resolve_tag(Some(" "), Some("v0.7.0")), "v0.7.0");
        assert_eq!(resolve_tag(None, None), "latest");
        assert_eq!(resolve_tag(None, Some("")), "latest");
    }

    #[test]
    fn detects_split_parts_in_order() {
        let assets = vec![
            asset("debian-13-pve.qcow2.partab"),
            asset("debian-12.qcow2"),
            asset("debian-13-pve.qcow2.partaa"),
            asset("debian-13-pve.qcow2.partac"),
            asset("SHA256SUMS"),
        ];
        let parts = split_parts(&assets, "debian-13-pve.qcow2")
            .expect("ok")
            .expect("found");
        let names: Vec<&str> = parts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "debian-13-pve.qcow2.partaa",
                "debian-13-pve.qcow2.partab",
                "debian-13-pve.qcow2.partac"
            ]
        );
        let whole = split_parts(&assets, "debian-12.qcow2")
            .expect("ok")
            .expect("found");
        assert_eq!(whole.len(), 1);
        assert!(split_parts(&assets, "nope.qcow2").expect("ok").is_none());

        let gap = vec![asset("i.partaa"), asset("i.partac")];
        assert!(matches!(
            split_parts(&gap, "i"),
            Err(DownloadError::PartsGap { .. })
        ));
        // 27 parts: ...az then ba.
        let many: Vec<Asset> = (0..27)
            .map(|i| {
                asset(&format!(
                    "i.part{}{}",
                    (b'a' + i / 26) as char,
                    (b'a' + i % 26) as char
                ))
            })
            .collect();
        assert_eq!(
            split_parts(&many, "i").expect("ok").expect("found").len(),
            27
        );
    }

    #[test]
    fn parses_checksum_formats() {
        let h1 = "a".repeat(64);
        let h2 = "B".repeat(64);
        let text = format!("# sums\n{h1}  debian.qcow2.partaa\n{h2} *dist/debian.qcow2\nSHA256 (other.img) = {h1}\nnot a line\n");
        let m = parse_checksums(&text, "x");
        assert_eq!(m.get("debian.qcow2.partaa"), Some(&h1));
        assert_eq!(m.get("debian.qcow2"), Some(&"b".repeat(64)));
        assert_eq!(m.get("other.img"), Some(&h1));
        assert_eq!(m.len(), 3);
        let lone = parse_checksums(&format!("{h1}\n"), "img.qcow2");
        assert_eq!(lone.get("img.qcow2"), Some(&h1));
    }
}
