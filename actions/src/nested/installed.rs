//! A `pve` guest of a real PVE host: its image has Proxmox VE installed
//! (e.g. `debian-13-pve`), or its `install_pve` step installs it onto the
//! plain Debian it runs (`crate::host::install`, as `driver host install-pve`
//! does, over the guest's SSH connection); then it is set up as a host for its
//! subtree with PVE's own command line tools over SSH, as root on it
//! (`pveversion`, `pvesh`, `pveum`, `pvesm`, `qm`); each step reads before it
//! writes. Storage, bridge, fingerprint and token are done as `driver host
//! setup` does them (`crate::host::pve`).
//!
//! The child driver, its site-config subset and its state live in one
//! folder on the guest ([`InstalledPve::dir`]).
//!
//! The checks and the token, storage and bridge steps run through a [`Host`]: over SSH from
//! the parent (push mode), or on the node itself (a `pve` node in pull mode,
//! `crate::node_config::pve`). `install_pve` and the images stay the parent's, over SSH.

use std::collections::BTreeMap;
use std::time::Duration;

use engine::executor::ActionError;
use serde_json::Value;

use super::{fail, sh, Guest, Nesting, CHILD_TOKEN, SHORT};
use crate::host::install::{self, InstallOptions, Installed, Reconnect};
use crate::host::pve::{self, BridgePort};
use crate::host::{setup, Host, Report};
use crate::poll::{self, Backoff, GaveUp, Poll};
use crate::ssh::{shell_quote, Connection, SshTarget};

/// Where the child driver lives on a nested PVE unless told otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/driver";
/// Where PVE keeps ISO-like files; downloaded images go here (as the seed's
/// `publish.sh` does).
pub const DEFAULT_IMAGE_DIR: &str = "/var/lib/vz/template/iso";
/// The bridge the child's guests use (the node file written says so).
const BRIDGE: &str = "vmbr0";
/// How long a freshly booted PVE may take until its API answers.
const API_WAIT: Duration = Duration::from_secs(180);
/// Asks it every 2 s.
const API_POLL: Backoff = Backoff::new(Duration::from_secs(2), 1, Duration::from_secs(2));

#[derive(Clone, Debug)]
pub struct InstalledPve {
    /// The folder on the guest for the child driver, its files and state.
    pub dir: String,
    /// Where images are downloaded to on the guest.
    pub image_dir: String,
    /// Image name → its release file (site-config `images/NAME.yaml` `file:`).
    pub image_files: BTreeMap<String, String>,
    /// What the host steps (`install_pve`) see as `/` on the guest: `/` but
    /// in tests.
    pub root: String,
    /// How long `install_pve` waits for the guest to come back from its reboot.
    pub reboot_timeout: Duration,
}

impl Default for InstalledPve {
    fn default() -> Self {
        InstalledPve {
            dir: DEFAULT_DIR.into(),
            image_dir: DEFAULT_IMAGE_DIR.into(),
            image_files: BTreeMap::new(),
            root: "/".into(),
            reboot_timeout: Duration::from_secs(600),
        }
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// What a step changed, for the user.
fn log(guest: &Guest<'_>, r: &Report) {
    for c in &r.changed {
        guest.log(c.clone());
    }
}

impl InstalledPve {
    /// Proxmox VE onto the guest's Debian 13, as `driver host install-pve`
    /// does (it checks first: a guest that has PVE changes nothing), then its
    /// repositories as `driver host setup` leaves them.
    pub(super) async fn install_pve(
        &self,
        h: &mut Host,
        target: &SshTarget,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let o = InstallOptions {
            address: guest.ip.to_string(),
            domain: None,
            skip_preflight: false,
            dry_run: false,
            reboot_timeout: self.reboot_timeout,
        };
        let mut r = match install::install_pve(h, &o, Reconnect::Ssh(target)).await? {
            Installed::Done(r) => r,
            Installed::Rebooting(_) => {
                return Err(fail("the install asked to be finished after a reboot"))
            }
        };
        setup::ensure_repos(h, false, &mut r).await?;
        if r.changed.is_empty() {
            guest.log("Proxmox VE is installed");
        }
        log(guest, &r);
        Ok(())
    }

    /// After the upload: PVE is installed, its API answers, and a storage
    /// takes guest disks and cloud-init snippets.
    pub(crate) async fn check_pve(&self, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
        let v = h.run("pveversion", SHORT).await?;
        if !v.ok() {
            return Err(fail(format!(
                "{} does not run Proxmox VE (`pveversion`: {}): its image is said to have PVE \
                 (images/{}.yaml `pve: true`); drop that line to have driver install PVE on it, \
                 or give it an image with PVE installed (e.g. debian-13-pve)",
                guest.name,
                v.stderr.trim().lines().last().unwrap_or("failed"),
                guest.image.unwrap_or("IMAGE"),
            )));
        }
        guest.log(v.stdout.trim().to_string());
        let up = poll::until(API_WAIT, API_POLL, || async {
            match h
                .run("pvesh get /version --output-format json", SHORT)
                .await
            {
                Ok(up) if up.ok() => Poll::Ready(()),
                Ok(up) => Poll::Pending(Ok(up.stderr.trim().to_string())),
                Err(e) => Poll::Fail(Err(e)),
            }
        })
        .await;
        match up {
            Ok(_) => {}
            Err(GaveUp { last: Err(e), .. }) => return Err(e.into()),
            Err(GaveUp {
                last: Ok(said),
                waited,
                ..
            }) => {
                return Err(fail(format!(
                    "the PVE API on {} did not answer after {waited}: {said}",
                    guest.name,
                )))
            }
        }
        let node = pve::node_name(h, Some(guest.name)).await?;
        let mut r = Report::default();
        pve::ensure_storage(h, &node, false, &mut r).await?;
        log(guest, &r);
        Ok(())
    }

    /// The child's API token (kept when the child's secrets hold it and it
    /// is on the guest; else made anew with `pveum`), returned
    /// (`USER@REALM!ID=SECRET`) when new, and the child's node file.
    pub(super) async fn api_token(
        &self,
        h: &Host,
        guest: &Guest<'_>,
    ) -> Result<(Option<String>, String), ActionError> {
        let node = pve::node_name(h, Some(guest.name)).await?;
        let mut r = Report::default();
        let storage = pve::ensure_storage(h, &node, false, &mut r).await?;
        let fingerprint = pve::fingerprint(h, &node)
            .await?
            .ok_or_else(|| fail(format!("{} shows no API certificate", guest.name)))?;
        let held = format!("root@pam!{CHILD_TOKEN}=");
        let known = h
            .run(
                &sh(
                    &self.dir,
                    &format!("grep -qF {} site-config/secrets.yaml", shell_quote(&held)),
                ),
                SHORT,
            )
            .await?
            .ok();
        let token = pve::ensure_token(
            h,
            "root@pam",
            CHILD_TOKEN,
            "driver (nested)",
            known,
            false,
            &mut r,
        )
        .await?;
        log(guest, &r);
        let node_file = format!(
            "# Written by driver: this host is a nested PVE.\n\
             node: {node}\napi_endpoint: https://{ip}:8006\nfingerprint: \"{fingerprint}\"\n\
             api_token: {name}\ndatastore: {storage}\nbridge: {BRIDGE}\nip: {ip}\n",
            ip = guest.ip,
            name = guest.name,
        );
        Ok((token.map(|t| t.expose().clone()), node_file))
    }

    /// vmbr0 exists, or is made: a bridge over the interface that holds the
    /// guest's address, which moves onto the bridge (so the child's guests
    /// share the guest's network), applied with PVE's network reload.
    pub(super) async fn ensure_bridge(
        &self,
        h: &Host,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let node = pve::node_name(h, Some(guest.name)).await?;
        let mut r = Report::default();
        pve::ensure_bridge(
            h,
            &node,
            BRIDGE,
            BridgePort::Holding(guest.ip),
            false,
            &mut r,
        )
        .await?;
        log(guest, &r);
        Ok(())
    }

    /// Each image the child's guests are cloned from is a template on the
    /// guest: downloaded there (by the child driver, `images download`)
    /// unless the file is there, then imported into a VM made a template.
    pub(super) async fn ensure_images(
        &self,
        n: &Nesting,
        h: &Host,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let images = guest.images()?;
        if images.is_empty() {
            return Ok(());
        }
        let node = pve::node_name(h, Some(guest.name)).await?;
        let resources = pve::json(
            h,
            "pvesh get /cluster/resources --type vm --output-format json",
        )
        .await?;
        let have: Vec<&str> = resources
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g.get("template").and_then(Value::as_u64) == Some(1))
            .filter_map(|g| str_of(g, "name"))
            .collect();
        let mut done: Vec<&str> = Vec::new();
        for (child, image) in &images {
            if have.contains(&image.as_str()) || done.contains(&image.as_str()) {
                continue;
            }
            let file = self.image_files.get(image).ok_or_else(|| {
                fail(format!(
                    "image '{image}' (for {child}) is not on {} and the site-config has no \
                     images/{image}.yaml naming its file",
                    guest.name
                ))
            })?;
            let path = format!("{}/{file}", self.image_dir);
            let there = conn
                .exec(&format!("test -s {}", shell_quote(&path)), SHORT)
                .await?;
            if !there.status.success() {
                guest.log(format!("downloading {file}"));
                let get = n.sh(&format!(
                    "HOMESTAK_SITE_CONFIG=./site-config ./driver images download {} --dest {}",
                    shell_quote(file),
                    shell_quote(&self.image_dir)
                ));
                conn.exec(&get, guest.timeout).await?.check()?;
            }
            let storage = pve::ensure_storage(h, &node, false, &mut Report::default()).await?;
            let id = crate::templates::ssh::next_id(conn)
                .await
                .map_err(|e| fail(format!("picking a VM id: {e}")))?;
            guest.log(format!("making template {image} (vmid {id}) from {file}"));
            conn.exec(
                &crate::templates::ssh::qm_template_command(id, image, &storage, &path, BRIDGE),
                guest.timeout,
            )
            .await?
            .check()?;
            done.push(image);
        }
        Ok(())
    }
}
