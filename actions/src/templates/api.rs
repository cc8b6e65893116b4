//! Making a template through the host's API: the image file into a storage holding
//! `import` (upstream images fetched by the host with `download-url`, release images
//! downloaded here and uploaded), a VM created from it with `import-from`, then made a
//! template. When the API cannot take the file (no `import` storage, or the storage
//! refusing the call) the SSH fallback takes over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::site_config::{ImageSource, ImageSpec};

use super::fetch::{self, human};
use super::{ImageSetup, Log, TemplateError};
use crate::pve::{GuestKind, PveClient, PveError, StorageInfo};

/// Picks of a vmid lost to another creator before giving up.
const MAX_ID_TRIES: u32 = 10;

/// Why the file could not go through the API.
enum Refused {
    /// The host refused the call itself: the SSH fallback may do it.
    Api(String),
    Failed(TemplateError),
}

impl From<TemplateError> for Refused {
    fn from(e: TemplateError) -> Self {
        Refused::Failed(e)
    }
}

impl From<PveError> for Refused {
    fn from(e: PveError) -> Self {
        Refused::Failed(e.into())
    }
}

/// The storage new guest disks go to: usable, holding `images` (`local-lvm` first).
pub(crate) fn disk_storage(storages: &[StorageInfo]) -> Option<String> {
    let mut usable: Vec<&StorageInfo> = storages
        .iter()
        .filter(|s| s.usable() && s.holds("images"))
        .collect();
    usable.sort_by_key(|s| s.storage != "local-lvm");
    usable.first().map(|s| s.storage.clone())
}

/// Makes the template of `spec`; returns its vmid.
pub(super) async fn make(
    client: &PveClient,
    setup: &ImageSetup,
    spec: &ImageSpec,
    timeout: Duration,
    log: Log<'_>,
) -> Result<u32, TemplateError> {
    let storages = client.storages().await?;
    let disk = disk_storage(&storages).ok_or_else(|| {
        TemplateError::image(
            &spec.name,
            format!(
                "no storage on node {} takes guest disks (content 'images')",
                client.node()
            ),
        )
    })?;
    let import = storages
        .iter()
        .find(|s| s.usable() && s.holds("import"))
        .map(|s| s.storage.clone());
    let why_not = match import {
        Some(store) => match into_storage(client, setup, spec, &store, timeout, log).await {
            Ok(volid) => {
                return from_volume(client, setup, spec, &disk, &volid, timeout, log).await
            }
            Err(Refused::Failed(e)) => return Err(e),
            Err(Refused::Api(why)) => why,
        },
        None => match client.version().await {
            Ok((major, minor)) if (major, minor) < (8, 4) => {
                format!("PVE {major}.{minor} has no 'import' content type (PVE 8.4 brought it)")
            }
            _ => format!(
                "no storage on node {} holds content 'import' (`pvesm set local --content \
                 backup,import,iso,vztmpl` adds it)",
                client.node()
            ),
        },
    };
    log(format!(
        "{why_not}: making template '{}' over SSH",
        spec.name
    ));
    super::ssh::make(setup, spec, &disk, timeout, log, &why_not).await
}

/// Gets the image file into `store` (content `import`); returns its volid.
async fn into_storage(
    client: &PveClient,
    setup: &ImageSetup,
    spec: &ImageSpec,
    store: &str,
    timeout: Duration,
    log: Log<'_>,
) -> Result<String, Refused> {
    let volid = format!("{store}:import/{}", spec.file);
    if client
        .volumes(store, "import")
        .await?
        .iter()
        .any(|v| v.volid == volid)
    {
        log(format!("{volid} is already on the host"));
        return Ok(volid);
    }
    let host_line = |l: &str| log(format!("host: {l}"));
    match &spec.source {
        ImageSource::Url {
            url,
            algorithm,
            checksum,
        } => {
            log(format!("the host downloads {url} into {store}"));
            let upid = match client
                .download_url(
                    store,
                    url,
                    "import",
                    &spec.file,
                    Some((algorithm.name(), checksum)),
                )
                .await
            {
                Ok(u) => u,
                Err(e @ PveError::Api { .. }) => return Err(Refused::Api(e.to_string())),
                Err(e) => return Err(e.into()),
            };
            client
                .follow_task(&upid, timeout, &host_line)
                .await
                .map_err(|e| fetch_failed(spec, url, algorithm.name(), e))?;
        }
        ImageSource::Release { .. } => {
            let path = fetch::release_image(spec, setup, timeout, log).await?;
            let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
            log(format!(
                "uploading {} ({}) into {store}",
                spec.file,
                human(size)
            ));
            let sent = Arc::new(AtomicU64::new(0));
            let counter = sent.clone();
            let upload = client.upload(store, "import", &path, &spec.file, None, move |n| {
                counter.store(n, Ordering::Relaxed)
            });
            tokio::pin!(upload);
            let mut shown = 0;
            let upid = loop {
                tokio::select! {
                    r = &mut upload => break r,
                    // Progress for the user: every tenth of the file, at most twice a second.
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        let tenth = (sent.load(Ordering::Relaxed) * 10).checked_div(size).unwrap_or(0);
                        if tenth > shown {
                            shown = tenth;
                            log(format!("uploaded {}0%", tenth));
                        }
                    }
                }
            };
            let upid = match upid {
                Ok(u) => u,
                Err(e @ PveError::Api { .. }) => return Err(Refused::Api(e.to_string())),
                Err(e) => return Err(e.into()),
            };
            client.follow_task(&upid, timeout, &host_line).await?;
        }
    }
    Ok(volid)
}

/// A failed `download-url` task, in the user's terms: a checksum mismatch names the
/// image, the URL and both sums.
fn fetch_failed(spec: &ImageSpec, url: &str, alg: &str, e: PveError) -> TemplateError {
    if let PveError::TaskFailed { exitstatus, .. } = &e {
        if let Some(rest) = exitstatus.strip_prefix("checksum mismatch: got '") {
            if let Some((got, expected)) = rest.split_once("' != expect '") {
                return TemplateError::image(
                    &spec.name,
                    format!(
                        "{url} has {alg} {got}, but {} says {}: the file changed upstream \
                         or the checksum is wrong; nothing was kept",
                        spec.file_path,
                        expected.trim_end_matches('\'')
                    ),
                );
            }
        }
    }
    TemplateError::image(&spec.name, format!("the host could not fetch {url}: {e}"))
}

/// A VM from the imported volume, made a template; returns its vmid. A VM left
/// half-made (created, not a template) is deleted again.
async fn from_volume(
    client: &PveClient,
    setup: &ImageSetup,
    spec: &ImageSpec,
    disk: &str,
    volid: &str,
    timeout: Duration,
    log: Log<'_>,
) -> Result<u32, TemplateError> {
    let mut floor = None;
    let mut tries = 0;
    let id = loop {
        tries += 1;
        let id = client.next_id_from(floor).await?;
        log(format!("creating VM {id} '{}' from {volid}", spec.name));
        let params = create_params(setup, spec, id, disk, volid);
        match client.create_vm(&params, timeout).await {
            Ok(()) => break id,
            Err(e) if e.is_vmid_taken() && tries < MAX_ID_TRIES => {
                floor = Some(id.saturating_add(1));
            }
            Err(e) => {
                remove_half_made(client, spec, id, timeout).await;
                return Err(e.into());
            }
        }
    };
    log(format!("making VM {id} the template '{}'", spec.name));
    if let Err(e) = client.make_template(id, timeout).await {
        remove_half_made(client, spec, id, timeout).await;
        return Err(e.into());
    }
    Ok(id)
}

/// The `POST /nodes/{node}/qemu` parameters of a template's VM.
fn create_params(
    setup: &ImageSetup,
    spec: &ImageSpec,
    id: u32,
    disk: &str,
    volid: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("vmid", id.to_string()),
        ("name", spec.name.clone()),
        ("memory", "2048".into()),
        ("cores", "2".into()),
        ("ostype", "l26".into()),
        ("scsihw", "virtio-scsi-single".into()),
        ("net0", format!("virtio,bridge={}", setup.bridge)),
        ("scsi0", format!("{disk}:0,import-from={volid}")),
        ("ide2", format!("{disk}:cloudinit")),
        ("boot", "order=scsi0".into()),
        ("serial0", "socket".into()),
        ("vga", "serial0".into()),
        ("agent", "1".into()),
        (
            "description",
            format!("template made by driver from {}", spec.file_path),
        ),
    ]
}

/// Deletes the VM this call just created under `id` when it is still there, named like
/// the image and not a template (nobody else's, and nothing anyone clones from).
async fn remove_half_made(client: &PveClient, spec: &ImageSpec, id: u32, timeout: Duration) {
    match client.find_guest(id).await {
        Ok(Some(g)) if g.name == spec.name && !g.template && g.kind == GuestKind::Qemu => {
            if let Err(e) = client.delete_guest(GuestKind::Qemu, id, timeout).await {
                tracing::warn!(
                    "cannot remove the half-made VM {id} of '{}': {e}",
                    spec.name
                );
            }
        }
        _ => {}
    }
}
