//! Templates on the target host: what making them needs from the site-config and the node
//! file ([`image_setup`]), the images a manifest's nodes clone on the host ([`wanted`]),
//! `driver images ensure` (the ensure step alone, with progress), and the template lines of
//! `driver preflight` ([`preflight_checks`]).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use actions::preflight::Check;
use actions::pve::{GuestKind, PveClient};
use actions::ssh::SshAuth;
use actions::templates::check::{self, TemplateState};
use actions::templates::{Ensured, ImageSetup};
use engine::manifest::NodeKind;
use engine::site_config::{Entity, HostConfig, ImageMirror, ImagesMirror, SiteConfig};
use engine::Manifest;

/// Where the SSH fallback puts image files on a host (as `publish.sh` and nested hosts do).
const HOST_IMAGE_DIR: &str = "/var/lib/vz/template/iso";

/// What making templates on `host` needs: the site-config's images read typed (the broken
/// ones kept with their error), the default release tag, the driver's download cache, and
/// the host over SSH for the fallback (a real host's `ip:`/`ssh_user:`; a simulated host
/// has no shell). With `images_mirror: sim` every image comes from `mirror`, the image
/// mirror the host's simulator publishes (an error when it publishes none).
pub fn image_setup(
    site: &SiteConfig,
    host: &HostConfig,
    state_dir: &Path,
    auth: SshAuth,
    mirror: Option<&sim::folder::ImagesMirror>,
) -> Result<ImageSetup, String> {
    let mut setup = ImageSetup {
        default_release: actions::download::resolve_tag(
            None,
            site.default_str("packer_release")
                .or_else(|| site.default_str("image_release")),
        ),
        cache_dir: state_dir.join("images"),
        bridge: host.bridge.clone(),
        host_image_dir: HOST_IMAGE_DIR.to_string(),
        ..ImageSetup::default()
    };
    let mirror = match (host.images_mirror, mirror) {
        (None, _) => None,
        (Some(ImagesMirror::Sim), Some(m)) => Some(ImageMirror {
            url: m.url.clone(),
            sha256: m.sha256.clone(),
        }),
        (Some(ImagesMirror::Sim), None) => {
            return Err(format!(
                "{} says `images_mirror: sim`, but the simulator serving '{}' publishes no image \
                 mirror (a simulator started without --bare, by another driver?)",
                host.file, host.name
            ))
        }
    };
    if let Some(m) = &mirror {
        let note = format!(
            "the simulator's image mirror {} (images_mirror: sim)",
            m.url
        );
        tracing::info!("images of '{}' come from {note}", host.name);
        setup.mirror = Some(note);
        // The mirror's files are stand-ins: never in the cache real hosts' images are taken from.
        setup.cache_dir = state_dir.join("images").join("sim-mirror");
    }
    for name in site.names(Entity::Image) {
        let spec = site.image(&name).map_err(|e| e.to_string());
        let spec = match (spec, &mirror) {
            (Ok(s), Some(m)) => s.mirrored(m),
            (spec, _) => spec,
        };
        match spec {
            Ok(spec) => {
                setup.images.insert(name, spec);
            }
            Err(e) => {
                setup.broken.insert(name, e);
            }
        }
    }
    setup.ssh = super::target::host_ssh(host, state_dir, auth);
    Ok(setup)
}

/// The (kind, image) of each node cloned on the target host itself, once each.
/// Containers are not cloned: their template archive is found or fetched by the
/// run itself (`actions::ct_templates`), from PVE's appliance index or a `url:`.
pub fn wanted(manifest: &Manifest) -> Vec<(GuestKind, String)> {
    let mut out: Vec<(GuestKind, String)> = Vec::new();
    for n in manifest
        .nodes
        .iter()
        .filter(|n| n.parent.is_none() && n.kind != NodeKind::Ct)
    {
        let Some(image) = &n.image else { continue };
        let kind = match n.kind {
            NodeKind::Ct => GuestKind::Lxc,
            NodeKind::Vm | NodeKind::Pve => GuestKind::Qemu,
        };
        if !out.iter().any(|(k, i)| *k == kind && i == image) {
            out.push((kind, image.clone()));
        }
    }
    out
}

/// Preflight lines: each template the manifest needs, present or missing with the command
/// that makes it; failed only when nothing could make it.
pub async fn preflight_checks(
    client: &PveClient,
    setup: &ImageSetup,
    host: &str,
    manifest: &Manifest,
) -> Vec<Check> {
    let wanted = wanted(manifest);
    match check::check(client, setup, host, &wanted).await {
        Ok(found) => found
            .into_iter()
            .map(|c| {
                let ok = c.ok();
                let (detail, fix) = match c.state {
                    TemplateState::Present { vmid } => (
                        format!("{} template '{}': vmid {vmid}", c.kind, c.image),
                        None,
                    ),
                    TemplateState::Missing { source, command } => (
                        format!(
                            "{} template '{}' missing: made from {source} by the run, or now \
                             with `{command}`",
                            c.kind, c.image
                        ),
                        None,
                    ),
                    TemplateState::NoSource { why } => (
                        format!("{} template '{}' missing: {why}", c.kind, c.image),
                        Some(format!(
                            "add images/{}.yaml (`file:` and `release:`, or `url:` and \
                             `sha256:`), or make the template on the host",
                            c.image
                        )),
                    ),
                };
                Check {
                    name: "template",
                    ok,
                    detail,
                    fix,
                }
            })
            .collect(),
        Err(e) => vec![Check {
            name: "template",
            ok: false,
            detail: format!("cannot list the host's templates: {e}"),
            fix: None,
        }],
    }
}

/// One image's outcome of `images ensure`.
#[derive(serde::Serialize)]
pub struct EnsureOutcome {
    pub image: String,
    pub vmid: u32,
    /// `present` or `made`.
    pub outcome: &'static str,
}

/// Ensures each image's template with progress (a spinner with the latest line on a
/// terminal, else the lines on stderr; none with `json`).
pub async fn ensure_all(
    templates: &Arc<actions::templates::Templates>,
    client: &PveClient,
    images: &[String],
    timeout: std::time::Duration,
    json: bool,
) -> Result<Vec<EnsureOutcome>, actions::templates::TemplateError> {
    let bar = (std::io::stderr().is_terminal() && !json).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut out = Vec::new();
    for image in images {
        let b = bar.clone();
        let name = image.clone();
        let log = move |l: String| match &b {
            Some(b) => b.set_message(format!("{name}: {l}")),
            None if !json => crate::errln!("{name}: {l}"),
            None => {}
        };
        let r = templates
            .ensure(
                client,
                GuestKind::Qemu,
                image,
                "images ensure",
                timeout,
                &log,
            )
            .await;
        let e = match r {
            Ok(e) => e,
            Err(err) => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Err(err);
            }
        };
        out.push(EnsureOutcome {
            image: image.clone(),
            vmid: e.vmid(),
            outcome: match e {
                Ensured::Made(_) => "made",
                Ensured::Present(_) | Ensured::Waited(_) => "present",
            },
        });
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(out)
}
