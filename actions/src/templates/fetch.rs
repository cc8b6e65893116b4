//! A release image into the driver's own cache, as `driver images download` fetches it
//! (split parts, resume, published checksums; see [`crate::download`]), with progress as
//! log lines (about one per tenth of the download, and one per phase).

use std::path::PathBuf;
use std::time::Duration;

use engine::site_config::{ImageSource, ImageSpec};

use super::{ImageSetup, Log, TemplateError};
use crate::download::{self, ImageDownload, Phase, Progress, ReleaseSource};

/// `1.5 MiB`-style sizes for progress lines.
pub(crate) fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Where a release image's listing is, for messages.
pub(crate) fn release_url(spec: &ImageSpec, setup: &ImageSetup) -> String {
    match &spec.source {
        ImageSource::Release {
            release,
            repo,
            api_base,
        } => format!(
            "{}/repos/{repo}/releases/tags/{}",
            api_base.trim_end_matches('/'),
            release.as_deref().unwrap_or(&setup.default_release)
        ),
        ImageSource::Url { url, .. } => url.clone(),
    }
}

/// Downloads the release image of `spec` into the cache; returns its path.
pub(crate) async fn release_image(
    spec: &ImageSpec,
    setup: &ImageSetup,
    timeout: Duration,
    log: Log<'_>,
) -> Result<PathBuf, TemplateError> {
    let ImageSource::Release {
        release,
        repo,
        api_base,
    } = &spec.source
    else {
        return Err(TemplateError::image(&spec.name, "not a release image"));
    };
    let tag = release
        .clone()
        .unwrap_or_else(|| setup.default_release.clone());
    let source = ReleaseSource {
        api_base: api_base.clone(),
        repo: repo.clone(),
        token: None,
    };
    let mut req = ImageDownload::new(source, tag.clone(), spec.file.clone(), &setup.cache_dir);
    req.timeout = timeout;
    let mut last: Option<(Phase, usize, u64)> = None;
    let outcome = download::download_image(&req, |p: &Progress| {
        let tenth = (p.bytes_done * 10).checked_div(p.bytes_total).unwrap_or(0);
        let now = (p.phase, p.part, tenth);
        if last != Some(now) {
            last = Some(now);
            log(format!(
                "{} {} (release {tag}): part {}/{}, {} of {}",
                match p.phase {
                    Phase::Downloading => "downloading",
                    Phase::Verifying => "verifying",
                    Phase::Assembling => "assembling",
                    Phase::Done => "downloaded",
                },
                p.image,
                p.part,
                p.parts,
                human(p.bytes_done),
                human(p.bytes_total),
            ));
        }
    })
    .await
    .map_err(|e| {
        TemplateError::image(
            &spec.name,
            format!(
                "downloading {} from {}: {e}",
                spec.file,
                release_url(spec, setup)
            ),
        )
    })?;
    if outcome.skipped {
        log(format!("{} is in the download cache", spec.file));
    }
    Ok(outcome.path)
}
