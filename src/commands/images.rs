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

/// `driver images ensure -H HOST [IMAGE...] [-M MANIFEST]`: the ensure step alone.
pub fn ensure(
    args: &crate::cli::ImagesEnsureArgs,
    site_flag: Option<&Path>,
) -> Result<(), Failure> {
    use engine::catalog::ManifestRef;
    let dir = discover_site(site_flag)?;
    let site = SiteConfig::open(dir.clone()).map_err(config_failure)?;
    let manifest = match &args.manifest {
        Some(m) => Some(super::load_manifest(&ManifestRef::Name(m.clone()), &dir)?.manifest),
        None => None,
    };
    let mut images = args.images.clone();
    if let Some(m) = &manifest {
        for (kind, image) in super::templates::wanted(m) {
            if kind == actions::pve::GuestKind::Qemu && !images.contains(&image) {
                images.push(image);
            }
        }
    }
    if images.is_empty() {
        return Err(Failure::usage(miette::miette!(
            help = "name the images (`driver images ensure -H HOST debian-12`) or a manifest (-M)",
            "no image to ensure"
        )));
    }
    let empty = engine::Manifest {
        schema_version: 2,
        name: "images".into(),
        description: None,
        pattern: engine::manifest::Pattern::Flat,
        execution: Default::default(),
        settings: Default::default(),
        nodes: Vec::new(),
    };
    let m = manifest.as_ref().unwrap_or(&empty);
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(engine::state::default_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    let timeout = std::time::Duration::from_secs(args.timeout);
    let outcome = rt.block_on(async {
        let checked = super::target::check(&site, &args.host, m)?;
        let (t, guests) = super::target::connect(checked, &state_dir).await?;
        let runner = guests.runner(&site, &t, m, &state_dir, &Default::default())?;
        let r = match runner.images() {
            Some(templates) => super::templates::ensure_all(
                templates,
                &t.client,
                &images,
                timeout,
                args.json_output,
            )
            .await
            .map_err(|e| Failure::Run(Some(miette::miette!("{e}")))),
            None => Err(Failure::Run(Some(miette::miette!(
                "no image setup for this host"
            )))),
        };
        if let Some(sim) = t.sim {
            sim.shutdown().await;
        }
        r
    })?;
    if args.json_output {
        render::json::print(&outcome);
    } else {
        for o in &outcome {
            crate::outln!("{}: template vmid {} ({})", o.image, o.vmid, o.outcome);
        }
    }
    Ok(())
}
