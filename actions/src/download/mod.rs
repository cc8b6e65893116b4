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
//!
//! This module holds the request and outcome types, the errors, and the
//! steps above (`download_image`). The release listing and the HTTP client
//! are in `release`, finding, fetching (with resume) and assembling the
//! parts in `parts`, and the published checksums and hashing in
//! `checksums`.

mod checksums;
mod parts;
mod release;

pub use checksums::{parse_checksums, sha256_file};
pub use parts::split_parts;
pub use release::{fetch_release, http_client, Asset, Release};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tracing::{debug, info, warn};

use engine::secrets::Secret;

use checksums::checksum_asset;
use parts::{assemble, fetch_resumable};
use release::get_text;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
