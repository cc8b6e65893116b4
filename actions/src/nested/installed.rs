//! A `pve` guest of a real PVE host: its image has Proxmox VE installed
//! (e.g. `debian-13-pve`), and it is set up as a host for its subtree with
//! PVE's own command line tools over SSH, as root on it (`pveversion`,
//! `pvesh`, `pveum`, `pvesm`, `qm`); each step reads before it writes.
//!
//! The child driver, its site-config subset and its state live in one
//! folder on the guest ([`InstalledPve::dir`]).

use std::collections::BTreeMap;
use std::time::Duration;

use engine::executor::ActionError;
use serde_json::Value;

use super::{fail, Guest, Nesting, CHILD_TOKEN, SHORT};
use crate::poll::{self, Backoff, GaveUp, Poll};
use crate::ssh::{shell_quote, Connection};

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
}

impl Default for InstalledPve {
    fn default() -> Self {
        InstalledPve {
            dir: DEFAULT_DIR.into(),
            image_dir: DEFAULT_IMAGE_DIR.into(),
            image_files: BTreeMap::new(),
        }
    }
}

/// Runs a PVE tool that prints JSON (`--output-format json`) and parses it.
async fn json(conn: &Connection, cmd: &str, what: &str) -> Result<Value, ActionError> {
    let out = conn.exec(cmd, SHORT).await?;
    if !out.status.success() {
        return Err(fail(format!(
            "{what} failed (`{cmd}`): {}",
            out.stderr.trim().lines().last().unwrap_or("no message")
        )));
    }
    serde_json::from_str(out.stdout.trim())
        .map_err(|e| fail(format!("{what}: `{cmd}` printed no JSON ({e})")).because(e))
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

impl InstalledPve {
    /// The PVE node name of the guest: the one node of a fresh install (or
    /// the one named like the manifest node).
    async fn node_name(&self, conn: &Connection, guest: &Guest<'_>) -> Result<String, ActionError> {
        let nodes = json(
            conn,
            "pvesh get /nodes --output-format json",
            "listing PVE nodes",
        )
        .await?;
        let names: Vec<&str> = nodes
            .as_array()
            .map(|a| a.iter().filter_map(|n| str_of(n, "node")).collect())
            .unwrap_or_default();
        match names.as_slice() {
            [only] => Ok(only.to_string()),
            many if many.contains(&guest.name) => Ok(guest.name.to_string()),
            _ => Err(fail(format!(
                "cannot tell which PVE node {} is (its nodes: {})",
                guest.name,
                names.join(", ")
            ))),
        }
    }

    /// After the upload: PVE is installed, its API answers, and a storage
    /// takes guest disks and cloud-init snippets.
    pub(super) async fn check_pve(
        &self,
        _n: &Nesting,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let v = conn.exec("pveversion", SHORT).await?;
        if !v.status.success() {
            return Err(fail(format!(
                "{} does not run Proxmox VE (`pveversion`: {}): give it an image with PVE \
                 installed (e.g. debian-13-pve), or install PVE on it first (the pve-install \
                 playbook)",
                guest.name,
                v.stderr.trim().lines().last().unwrap_or("failed")
            )));
        }
        guest.log(v.stdout.trim().to_string());
        let up = poll::until(API_WAIT, API_POLL, || async {
            match conn
                .exec("pvesh get /version --output-format json", SHORT)
                .await
            {
                Ok(up) if up.status.success() => Poll::Ready(()),
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
        let node = self.node_name(conn, guest).await?;
        if self.guest_storage(conn, &node).await?.is_none() {
            // A fresh install's `local` holds only ISOs and templates; the
            // seed's nested-pve role widens it the same way.
            guest.log("enabling guest disks and snippets on storage 'local'");
            conn.exec(
                "pvesm set local --content images,rootdir,vztmpl,backup,iso,snippets",
                SHORT,
            )
            .await?
            .check()?;
        }
        Ok(())
    }

    /// The first active storage that takes guest disks (`local-lvm` first).
    async fn guest_storage(
        &self,
        conn: &Connection,
        node: &str,
    ) -> Result<Option<String>, ActionError> {
        let list = json(
            conn,
            &format!("pvesh get /nodes/{node}/storage --output-format json"),
            "listing storage",
        )
        .await?;
        let mut usable: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                str_of(s, "content").is_some_and(|c| c.split(',').any(|c| c == "images"))
                    && s.get("active").and_then(Value::as_u64).unwrap_or(1) == 1
            })
            .filter_map(|s| str_of(s, "storage").map(str::to_string))
            .collect();
        usable.sort_by_key(|s| s != "local-lvm");
        Ok(usable.into_iter().next())
    }

    /// A token made with `pveum`; returns it (`USER@REALM!ID=SECRET`) and the
    /// child's node file.
    pub(super) async fn api_token(
        &self,
        _n: &Nesting,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(String, String), ActionError> {
        let node = self.node_name(conn, guest).await?;
        let storage = self.guest_storage(conn, &node).await?.ok_or_else(|| {
            fail(format!(
                "no storage on {} takes guest disks (content 'images')",
                guest.name
            ))
        })?;
        let certs = json(
            conn,
            &format!("pvesh get /nodes/{node}/certificates/info --output-format json"),
            "reading the PVE certificate",
        )
        .await?;
        // pveproxy serves its own certificate when one was uploaded.
        let cert = |file: &str| {
            certs
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| str_of(c, "filename") == Some(file))
                .and_then(|c| str_of(c, "fingerprint"))
                .map(str::to_string)
        };
        let fingerprint = cert("pveproxy-ssl.pem")
            .or_else(|| cert("pve-ssl.pem"))
            .ok_or_else(|| fail(format!("{} shows no API certificate", guest.name)))?;
        let _ = conn
            .exec(
                &format!("pveum user token remove root@pam {CHILD_TOKEN}"),
                SHORT,
            )
            .await?;
        let made = json(
            conn,
            &format!(
                "pveum user token add root@pam {CHILD_TOKEN} --privsep 0 --comment {} \
                 --output-format json",
                shell_quote("driver (nested)")
            ),
            "creating the API token",
        )
        .await?;
        let value = str_of(&made, "value")
            .ok_or_else(|| fail("`pveum user token add` printed no token value"))?;
        let node_file = format!(
            "# Written by the parent driver: this host is a nested PVE.\n\
             node: {node}\napi_endpoint: https://{ip}:8006\nfingerprint: \"{fingerprint}\"\n\
             api_token: {name}\ndatastore: {storage}\nbridge: {BRIDGE}\nip: {ip}\n",
            ip = guest.ip,
            name = guest.name,
        );
        Ok((format!("root@pam!{CHILD_TOKEN}={value}"), node_file))
    }

    /// vmbr0 exists, or is made: a bridge over the interface that holds the
    /// guest's address, which moves onto the bridge (so the child's guests
    /// share the guest's network), applied with PVE's network reload.
    pub(super) async fn ensure_bridge(
        &self,
        _n: &Nesting,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let node = self.node_name(conn, guest).await?;
        let list = format!("pvesh get /nodes/{node}/network --output-format json");
        let has_bridge = |nets: &Value| {
            nets.as_array().into_iter().flatten().any(|i| {
                str_of(i, "iface") == Some(BRIDGE)
                    && i.get("active").and_then(Value::as_u64) == Some(1)
            })
        };
        if has_bridge(&json(conn, &list, "listing networks").await?) {
            return Ok(());
        }
        let addrs = json(conn, "ip -j -4 addr show", "listing addresses").await?;
        let (iface, prefix) = addrs
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|link| {
                let a = link
                    .get("addr_info")?
                    .as_array()?
                    .iter()
                    .find(|a| str_of(a, "local") == Some(guest.ip))?;
                Some((
                    str_of(link, "ifname")?.to_string(),
                    a.get("prefixlen")?.as_u64()?,
                ))
            })
            .ok_or_else(|| {
                fail(format!(
                    "no interface of {} holds its address {}",
                    guest.name, guest.ip
                ))
            })?;
        let routes = json(conn, "ip -j -4 route show default", "listing routes").await?;
        let gateway = routes
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| str_of(r, "gateway"))
            .map(|g| format!(" --gateway {}", shell_quote(g)))
            .unwrap_or_default();
        guest.log(format!(
            "creating bridge {BRIDGE} over {iface} ({}/{prefix})",
            guest.ip
        ));
        conn.exec(
            &format!(
                "pvesh create /nodes/{node}/network --iface {BRIDGE} --type bridge --autostart 1 \
                 --bridge_ports {iface} --cidr {ip}/{prefix}{gateway}",
                iface = shell_quote(&iface),
                ip = guest.ip,
            ),
            SHORT,
        )
        .await?
        .check()?;
        conn.exec(&format!("pvesh set /nodes/{node}/network"), SHORT)
            .await?
            .check()?;
        if has_bridge(&json(conn, &list, "listing networks").await?) {
            Ok(())
        } else {
            Err(fail(format!(
                "bridge {BRIDGE} on {} is not active after the network reload",
                guest.name
            )))
        }
    }

    /// Each image the child's guests are cloned from is a template on the
    /// guest: downloaded there (by the child driver, `images download`)
    /// unless the file is there, then imported into a VM made a template.
    pub(super) async fn ensure_images(
        &self,
        n: &Nesting,
        conn: &Connection,
        guest: &Guest<'_>,
    ) -> Result<(), ActionError> {
        let images = guest.images()?;
        if images.is_empty() {
            return Ok(());
        }
        let node = self.node_name(conn, guest).await?;
        let resources = json(
            conn,
            "pvesh get /cluster/resources --type vm --output-format json",
            "listing guests",
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
            let storage = self.guest_storage(conn, &node).await?.ok_or_else(|| {
                fail(format!(
                    "no storage on {} takes guest disks (content 'images')",
                    guest.name
                ))
            })?;
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
