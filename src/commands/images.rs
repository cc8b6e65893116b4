//! `driver images download`: a release image, with a progress bar.

use std::io::IsTerminal;
use std::path::Path;

use actions::download::{self, ImageDownload, Progress, ReleaseSource};
use engine::site_config::SiteConfig;
use indicatif::{ProgressBar, ProgressStyle};

use super::config::config_failure;
use super::{discover_site, Failure};
use crate::cli::ImagesDownloadArgs;
use crate::render;

pub fn download(args: &ImagesDownloadArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = SiteConfig::open(discover_site(site_flag)?).map_err(config_failure)?;
    // The original's order: --release, then site.yaml, then `latest`.
    let tag = download::resolve_tag(
        args.release.as_deref(),
        site.default_str("packer_release")
            .or_else(|| site.default_str("image_release")),
    );
    let source = ReleaseSource {
        api_base: args.api_base.clone(),
        repo: args.repo.clone(),
        token: None,
    };
    let mut req = ImageDownload::new(source, tag, args.image.clone(), args.dest.clone());
    req.force = args.force;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    let bar = (std::io::stderr().is_terminal() && !args.json_output).then(|| {
        let b = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    let mut last_phase = None;
    let outcome = rt.block_on(download::download_image(&req, |p: &Progress| {
        match &bar {
            Some(b) => {
                b.set_length(p.bytes_total);
                b.set_position(p.bytes_done);
                b.set_message(format!("{} part {}/{}", p.image, p.part, p.parts));
            }
            None if last_phase != Some(p.phase) => {
                crate::errln!("{}: {:?} (part {}/{})", p.image, p.phase, p.part, p.parts);
            }
            None => {}
        }
        last_phase = Some(p.phase);
    }));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = outcome.map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?;
    if args.json_output {
        render::json::print(&outcome);
    } else if outcome.skipped {
        crate::outln!(
            "{} is already there: nothing downloaded",
            outcome.path.display()
        );
    } else {
        crate::outln!(
            "{} ({} bytes, {} part{}, release {}, {} checked)",
            outcome.path.display(),
            outcome.bytes,
            outcome.parts,
            if outcome.parts == 1 { "" } else { "s" },
            outcome.tag,
            if outcome.verified.is_empty() {
                "no checksums published".to_string()
            } else {
                format!("{} file(s)", outcome.verified.len())
            }
        );
    }
    Ok(())
}
