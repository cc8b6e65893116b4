//! Making a template over SSH with PVE's own tools, for hosts whose API cannot take the
//! image (no `import` content before PVE 8.4, a storage refusing it): the file into the
//! host's ISO folder (an upstream image fetched there with `curl` and checked with
//! `sha256sum`/`sha512sum`, a release image downloaded here and copied over), then
//! `qm create ... --scsi0 STORAGE:0,import-from=PATH ... && qm template`. Nested PVE hosts
//! make their templates with the same command ([`qm_template_command`]).

use std::time::Duration;

use engine::site_config::{ImageSource, ImageSpec};
use serde_json::Value;

use super::{fetch, ImageSetup, Log, TemplateError};
use crate::ssh::{shell_quote, Connection};

/// Short commands (listing, a vmid).
const SHORT: Duration = Duration::from_secs(60);

/// `qm create` of a template's VM importing `path`, then `qm template`.
pub fn qm_template_command(id: u32, name: &str, storage: &str, path: &str, bridge: &str) -> String {
    format!(
        "qm create {id} --name {name} --memory 2048 --cores 2 --ostype l26 \
         --net0 virtio,bridge={bridge} --scsihw virtio-scsi-single \
         --scsi0 {storage}:0,import-from={path} --ide2 {storage}:cloudinit \
         --boot order=scsi0 --serial0 socket --vga serial0 --agent enabled=1 \
         && qm template {id}",
        name = shell_quote(name),
        bridge = shell_quote(bridge),
        storage = shell_quote(storage),
        path = shell_quote(path),
    )
}

/// Makes the template of `spec` over SSH (the API could not: `why`); returns its vmid.
pub(super) async fn make(
    setup: &ImageSetup,
    spec: &ImageSpec,
    disk: &str,
    timeout: Duration,
    log: Log<'_>,
    why: &str,
) -> Result<u32, TemplateError> {
    let target = setup.ssh.as_ref().ok_or_else(|| {
        TemplateError::image(
            &spec.name,
            format!(
                "{why}, and the host cannot be reached over SSH to make it with `qm` instead \
                 (its node file has no `ip:`)"
            ),
        )
    })?;
    let conn = crate::ssh::connect(target).await.map_err(|e| {
        TemplateError::image(
            &spec.name,
            format!(
                "{why}, and SSH to the host ({}) failed: {e}",
                target.label()
            ),
        )
    })?;
    make_on(&conn, setup, spec, disk, timeout, log).await
}

fn failed(spec: &ImageSpec, what: &str, e: impl std::fmt::Display) -> TemplateError {
    TemplateError::image(&spec.name, format!("{what}: {e}"))
}

/// Makes the template of `spec` through an open connection to the host, new disks on
/// `disk`; returns its vmid.
pub async fn make_on(
    conn: &Connection,
    setup: &ImageSetup,
    spec: &ImageSpec,
    disk: &str,
    timeout: Duration,
    log: Log<'_>,
) -> Result<u32, TemplateError> {
    let dir = setup.host_image_dir.trim_end_matches('/');
    let path = format!("{dir}/{}", spec.file);
    let part = format!("{path}.part");
    let there = conn
        .exec(&format!("test -s {}", shell_quote(&path)), SHORT)
        .await
        .map_err(|e| failed(spec, "SSH", e))?;
    if there.status.success() {
        log(format!("{path} is already on the host"));
    } else {
        conn.exec(&format!("mkdir -p {}", shell_quote(dir)), SHORT)
            .await
            .and_then(|o| o.check())
            .map_err(|e| failed(spec, &format!("creating {dir}"), e))?;
        match &spec.source {
            ImageSource::Url {
                url,
                algorithm,
                checksum,
            } => {
                log(format!("the host downloads {url} (curl)"));
                conn.exec(
                    &format!(
                        "curl -fsSL --retry 3 -o {p} {u}",
                        p = shell_quote(&part),
                        u = shell_quote(url)
                    ),
                    timeout,
                )
                .await
                .and_then(|o| o.check())
                .map_err(|e| failed(spec, &format!("fetching {url} on the host"), e))?;
                let tool = format!("{}sum", algorithm.name());
                let out = conn
                    .exec(&format!("{tool} {}", shell_quote(&part)), timeout)
                    .await
                    .and_then(|o| o.check())
                    .map_err(|e| failed(spec, &format!("{tool} on the host"), e))?;
                let got = out
                    .stdout
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if !got.eq_ignore_ascii_case(checksum) {
                    let _ = conn
                        .exec(&format!("rm -f {}", shell_quote(&part)), SHORT)
                        .await;
                    return Err(TemplateError::image(
                        &spec.name,
                        format!(
                            "{url} has {} {got}, but {} says {checksum}: the file changed \
                             upstream or the checksum is wrong; nothing was kept",
                            algorithm.name(),
                            spec.file_path
                        ),
                    ));
                }
            }
            ImageSource::Release { .. } => {
                let local = fetch::release_image(spec, setup, timeout, log).await?;
                log(format!("copying {} to the host", spec.file));
                conn.upload_file(&local, &part, 0o644, timeout)
                    .await
                    .map_err(|e| failed(spec, &format!("copying {} to the host", spec.file), e))?;
            }
        }
        conn.exec(
            &format!("mv {} {}", shell_quote(&part), shell_quote(&path)),
            SHORT,
        )
        .await
        .and_then(|o| o.check())
        .map_err(|e| failed(spec, "moving the image into place", e))?;
    }
    let id = next_id(conn)
        .await
        .map_err(|e| failed(spec, "picking a VM id", e))?;
    log(format!(
        "qm create {id} '{}' from {path}, then qm template",
        spec.name
    ));
    conn.exec(
        &qm_template_command(id, &spec.name, disk, &path, &setup.bridge),
        timeout,
    )
    .await
    .and_then(|o| o.check())
    .map_err(|e| failed(spec, "qm create/template", e))?;
    Ok(id)
}

/// `pvesh get /cluster/nextid`, which prints the id as a JSON string or number.
pub async fn next_id(conn: &Connection) -> Result<u32, String> {
    let out = conn
        .exec("pvesh get /cluster/nextid --output-format json", SHORT)
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(out.stderr.trim().to_string());
    }
    let v: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| e.to_string())?;
    v.as_str()
        .and_then(|s| s.parse::<u32>().ok())
        .or_else(|| v.as_u64().and_then(|i| u32::try_from(i).ok()))
        .ok_or_else(|| format!("`pvesh get /cluster/nextid` printed {v}"))
}
