//! The parts of an image: which assets make it up (itself, or split parts
//! in order), fetching one part over HTTP with Range resume and retries,
//! and concatenating the parts into the image.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use super::release::transfer;
use super::{io, Asset, DownloadError};

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

/// Fetches `asset` into `path`, resuming from what `path` holds, retrying
/// dropped transfers up to `attempts` times. `on_bytes(n)` gets the
/// part's bytes on disk.
pub(super) async fn fetch_resumable(
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
pub(super) async fn assemble(parts: &[PathBuf], out: &Path) -> Result<u64, DownloadError> {
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
}
