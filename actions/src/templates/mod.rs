//! The templates a host's guests are cloned from: found by name, or made from the
//! site-config's `images/NAME.yaml` when missing (the original's `ensure_image`).
//!
//! Making one: the image file gets into a storage that holds content `import` (a release
//! image is downloaded by the driver into its cache, then uploaded; an upstream `url:` image
//! is fetched by the host itself with `download-url`, checksum passed), a VM is created from
//! it (`import-from`, cloud-init drive, agent, serial console, boot order), then made a
//! template. A host whose API cannot take it (no `import` content before PVE 8.4, or a
//! storage refusing) gets it over SSH with PVE's own tools instead ([`ssh`]). Templates are
//! shared by every state using the host: never deleted here.
//!
//! Once per (kind, image) a run ([`Templates`]): the first node needing a missing template
//! makes it, the others wait for that and say so.
//!
//! Files: this one (setup, single flight, lookup), [`api`] (making one through the API),
//! [`fetch`] (release images into the local cache), [`ssh`] (the SSH fallback, shared with
//! nested hosts), [`check`] (what preflight reports).

mod api;
pub mod check;
mod fetch;
pub mod ssh;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::site_config::ImageSpec;
use tokio::sync::OnceCell;

use crate::single_flight::SingleFlight;

use crate::pve::{GuestKind, PveClient, PveError};
use crate::ssh::SshTarget;

/// What making templates needs from the site-config and the host's node file.
#[derive(Clone, Debug, Default)]
pub struct ImageSetup {
    /// `images/NAME.yaml`, read typed.
    pub images: BTreeMap<String, ImageSpec>,
    /// Image files that could not be read, by name: refused when one is needed.
    pub broken: BTreeMap<String, String>,
    /// The release tag of release images without `release:` (site default, else `latest`).
    pub default_release: String,
    /// The driver's own download cache for release images.
    pub cache_dir: PathBuf,
    /// The bridge of the template's NIC.
    pub bridge: String,
    /// The host over SSH (node file `ip:`, `ssh_user:`), for the fallback.
    pub ssh: Option<SshTarget>,
    /// Where the SSH fallback puts image files on the host.
    pub host_image_dir: String,
    /// Where the images come from when a mirror replaces their files' locations (node file
    /// `images_mirror:`; the specs above already point there), for the log.
    pub mirror: Option<String>,
}

/// A template's vmid, and whether this call made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// It was there.
    Present(u32),
    /// This call made it.
    Made(u32),
    /// Another node's call made it while this one waited.
    Waited(u32),
}

impl Ensured {
    pub fn vmid(self) -> u32 {
        match self {
            Ensured::Present(v) | Ensured::Made(v) | Ensured::Waited(v) => v,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error("image '{image}': {message}")]
    Image { image: String, message: String },
    /// Another node's attempt at the same template failed (its error, once).
    #[error("image '{image}': making its template failed for another node: {message}")]
    Earlier { image: String, message: String },
}

impl TemplateError {
    pub(crate) fn image(image: &str, message: impl Into<String>) -> Self {
        TemplateError::Image {
            image: image.to_string(),
            message: message.into(),
        }
    }

    pub fn timed_out(&self) -> bool {
        matches!(self, TemplateError::Pve(PveError::TaskTimeout { .. }))
    }
}

/// Progress lines for the user (the call's log facts).
pub type Log<'a> = &'a (dyn Fn(String) + Send + Sync);

#[derive(Default)]
struct Flight {
    /// Whether a call has started making it (the others wait).
    started: AtomicBool,
    done: OnceCell<Result<u32, String>>,
}

/// The templates of one host for one run: lookup, and making each missing one once.
pub struct Templates {
    setup: Arc<ImageSetup>,
    flights: SingleFlight<(GuestKind, String), Flight>,
}

/// The vmid of the `kind` template named `image`, if there is one.
pub async fn find(
    client: &PveClient,
    kind: GuestKind,
    image: &str,
) -> Result<Option<u32>, PveError> {
    Ok(client
        .guests()
        .await?
        .iter()
        .find(|g| g.template && g.kind == kind && g.name == image)
        .map(|g| g.vmid))
}

impl Templates {
    pub fn new(setup: ImageSetup) -> Self {
        Templates {
            setup: Arc::new(setup),
            flights: SingleFlight::default(),
        }
    }

    pub fn setup(&self) -> &ImageSetup {
        &self.setup
    }

    /// The template `image` of `kind` on the host, made when missing; `node` is who
    /// asks (for the waiting message).
    pub async fn ensure(
        &self,
        client: &PveClient,
        kind: GuestKind,
        image: &str,
        node: &str,
        timeout: Duration,
        log: Log<'_>,
    ) -> Result<Ensured, TemplateError> {
        let flight = self.flights.entry((kind, image.to_string()));
        if let Some(done) = flight.done.get() {
            return settled(image, done, Ensured::Present);
        }
        if flight.started.swap(true, Ordering::SeqCst) {
            log(format!(
                "waiting for template '{image}' (another node of this run is making it)"
            ));
        }
        // Whoever gets the cell first makes it; the closure runs once per run.
        let mut ran = false;
        let mut made = false;
        let (ran_ref, made_ref) = (&mut ran, &mut made);
        let done = flight
            .done
            .get_or_init(|| async move {
                *ran_ref = true;
                match self
                    .find_or_make(client, kind, image, node, timeout, log)
                    .await
                {
                    Ok((id, m)) => {
                        *made_ref = m;
                        Ok(id)
                    }
                    Err(TemplateError::Image { message, .. }) => Err(message),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await;
        match (done, ran) {
            (Ok(id), true) if made => Ok(Ensured::Made(*id)),
            (Ok(id), true) => Ok(Ensured::Present(*id)),
            (Err(m), true) => Err(TemplateError::Image {
                image: image.to_string(),
                message: m.clone(),
            }),
            (done, false) => settled(image, done, Ensured::Waited),
        }
    }

    async fn find_or_make(
        &self,
        client: &PveClient,
        kind: GuestKind,
        image: &str,
        node: &str,
        timeout: Duration,
        log: Log<'_>,
    ) -> Result<(u32, bool), TemplateError> {
        if let Some(id) = find(client, kind, image).await? {
            return Ok((id, false));
        }
        if kind == GuestKind::Lxc {
            return Err(TemplateError::image(
                image,
                format!(
                    "no lxc template named '{image}' on node {} (node {node} needs it): \
                     containers are created from container template archives \
                     (`vztmpl:` in images/{image}.yaml), not cloned from templates",
                    client.node()
                ),
            ));
        }
        let spec = self.spec(image, client.node())?;
        if let Some(m) = &self.setup.mirror {
            log(format!("{image}: from {m}"));
        }
        let id = api::make(client, &self.setup, spec, timeout, log).await?;
        Ok((id, true))
    }

    /// The image's file, or why there is none.
    fn spec(&self, image: &str, host: &str) -> Result<&ImageSpec, TemplateError> {
        if let Some(why) = self.setup.broken.get(image) {
            return Err(TemplateError::image(image, why.clone()));
        }
        self.setup.images.get(image).ok_or_else(|| {
            TemplateError::image(
                image,
                format!(
                    "no qemu template named '{image}' on node {host}, and the site-config has no \
                     images/{image}.yaml saying where its file comes from (add one with `file:` \
                     and `release:`, or `url:` and `sha256:`)"
                ),
            )
        })
    }
}

fn settled(
    image: &str,
    done: &Result<u32, String>,
    ok: impl Fn(u32) -> Ensured,
) -> Result<Ensured, TemplateError> {
    match done {
        Ok(id) => Ok(ok(*id)),
        Err(m) => Err(TemplateError::Earlier {
            image: image.to_string(),
            message: m.clone(),
        }),
    }
}
