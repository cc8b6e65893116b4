//! `driver vm|ct create`: one guest from flags or a file, cloned from a template or made
//! from scratch (a VM with an empty disk and optionally an ISO, a container from an
//! `ostemplate`), marked as driver's (so `vm delete` may remove it without `--force`).

use std::time::Duration;

use engine::ownership::Owner;
use serde::{Deserialize, Serialize};

use super::ops::{self, Change, ChangeError};
use super::{GuestRow, Kind};
use crate::pve::{CloneMode, PveClient, PveError};

/// The state id in the marker of guests made by the resource CLI (not by a manifest run):
/// their tag is `driver-cli`, and no manifest's state claims them.
pub const CLI_STATE: &str = "cli";
/// The manifest their marker names.
pub const CLI_MANIFEST: &str = "(driver create)";

/// What to make, from flags or `-f FILE` (the same keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateSpec {
    pub name: String,
    #[serde(default)]
    pub vmid: Option<u32>,
    /// Clone this template (its name or vmid).
    #[serde(default)]
    pub template: Option<String>,
    /// A container from scratch: the template archive's volid (`local:vztmpl/...`).
    #[serde(default)]
    pub ostemplate: Option<String>,
    /// A VM from scratch: an ISO's volid (`local:iso/...`) in its CD drive.
    #[serde(default)]
    pub iso: Option<String>,
    #[serde(default)]
    pub cores: Option<u32>,
    /// MiB.
    #[serde(default)]
    pub memory: Option<u64>,
    /// GiB: a clone's disk grows to it; a new guest's disk is made that size (default 8).
    #[serde(default)]
    pub disk: Option<u32>,
    /// Where a new guest's (or a full clone's) disk goes.
    #[serde(default)]
    pub storage: Option<String>,
    /// The bridge of a new guest's network card (default vmbr0); refused for a clone.
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A full clone instead of a linked one.
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub start: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("no {kind} template '{name}' on node {node} (templates: {have})")]
    NoTemplate {
        kind: &'static str,
        name: String,
        node: String,
        have: String,
    },
    #[error("a container from scratch needs `ostemplate` (a `local:vztmpl/...` volid), or `template` to clone")]
    NoOstemplate,
    #[error("`{0}` is for the other kind of guest")]
    WrongKind(&'static str),
    /// A setting the chosen way of making the guest would not use.
    #[error("`{key}` {why}")]
    NotUsed {
        key: &'static str,
        why: &'static str,
    },
    #[error("a guest named '{name}' exists already (vmid {vmid})")]
    Exists { name: String, vmid: u32 },
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Pve(#[from] PveError),
}

/// The marker a guest made by the resource CLI carries.
pub fn cli_owner(host: &str) -> Owner {
    Owner {
        manifest: CLI_MANIFEST.into(),
        host: host.into(),
        state: CLI_STATE.into(),
    }
}

/// Makes the guest and waits for it; returns its vmid.
pub async fn create(
    client: &PveClient,
    host: &str,
    kind: Kind,
    spec: &CreateSpec,
    timeout: Duration,
) -> Result<u32, CreateError> {
    match kind {
        Kind::Vm if spec.ostemplate.is_some() => return Err(CreateError::WrongKind("ostemplate")),
        Kind::Ct if spec.iso.is_some() => return Err(CreateError::WrongKind("iso")),
        _ => {}
    }
    if spec.template.is_some() {
        if spec.bridge.is_some() {
            return Err(CreateError::NotUsed {
                key: "bridge",
                why: "is for a guest made from scratch: a clone keeps its template's network \
                      card (change it on the template, or make the guest without `template`)",
            });
        }
        if spec.storage.is_some() && !spec.full {
            return Err(CreateError::NotUsed {
                key: "storage",
                why: "needs a full clone (`full`): a linked clone's disk stays on its template's \
                      storage",
            });
        }
    }
    let all = super::guests(client).await?;
    if let Some(g) = all.iter().find(|g| g.name == spec.name && !g.template) {
        return Err(CreateError::Exists {
            name: spec.name.clone(),
            vmid: g.vmid,
        });
    }
    let vmid = match spec.vmid {
        Some(id) => id,
        None => client.next_id().await?,
    };
    let owner = cli_owner(host);
    let marker = owner.marker(&spec.name).description();
    let tags = engine::ownership::with_tag(&spec.tags.join(";"), &owner);
    match &spec.template {
        Some(t) => {
            let tpl = all
                .iter()
                .find(|g| {
                    g.template && g.kind == kind && (g.name == *t || g.vmid.to_string() == *t)
                })
                .ok_or_else(|| CreateError::NoTemplate {
                    kind: kind.name(),
                    name: t.clone(),
                    node: client.node().into(),
                    have: {
                        let names: Vec<String> = all
                            .iter()
                            .filter(|g| g.template && g.kind == kind)
                            .map(|g| format!("{} ({})", g.name, g.vmid))
                            .collect();
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    },
                })?;
            let mode = match spec.full {
                true => CloneMode::Full {
                    storage: spec.storage.as_deref(),
                },
                false => CloneMode::Linked,
            };
            client
                .clone_guest_as(
                    kind.pve(),
                    tpl.vmid,
                    vmid,
                    &spec.name,
                    Some(&marker),
                    mode,
                    timeout,
                )
                .await?;
            let row = GuestRow {
                vmid,
                name: spec.name.clone(),
                kind,
                node: client.node().into(),
                status: "stopped".into(),
                cores: None,
                memory_mb: None,
                disk_gb: None,
                uptime_s: None,
                tags: Vec::new(),
                template: false,
                lock: None,
                driver_state: None,
            };
            let change = Change {
                cores: spec.cores,
                memory_mb: spec.memory,
                disk_gb: spec.disk,
                ..Change::default()
            };
            let cfg = client.config(kind.pve(), vmid).await?;
            let mut planned = ops::plan_change(&row, &cfg, &change)?;
            planned.set_tags(tags);
            ops::apply_change(client, &row, &planned).await?;
        }
        None => {
            let storage = spec.storage.clone().unwrap_or_else(|| "local-lvm".into());
            let disk = spec.disk.unwrap_or(8);
            let bridge = spec.bridge.clone().unwrap_or_else(|| "vmbr0".into());
            let mut params: Vec<(&str, String)> = vec![
                ("vmid", vmid.to_string()),
                ("cores", spec.cores.unwrap_or(1).to_string()),
                ("memory", spec.memory.unwrap_or(512).to_string()),
                ("description", marker),
                ("tags", tags),
            ];
            match kind {
                Kind::Vm => {
                    params.extend([
                        ("name", spec.name.clone()),
                        ("scsihw", "virtio-scsi-single".into()),
                        ("scsi0", format!("{storage}:{disk}")),
                        ("net0", format!("virtio,bridge={bridge}")),
                        ("ostype", "l26".into()),
                    ]);
                    if let Some(iso) = &spec.iso {
                        params.push(("ide2", format!("{iso},media=cdrom")));
                        params.push(("boot", "order=scsi0;ide2".into()));
                    }
                    client.create_vm(&params, timeout).await?;
                }
                Kind::Ct => {
                    let ostemplate = spec.ostemplate.clone().ok_or(CreateError::NoOstemplate)?;
                    params.extend([
                        ("hostname", spec.name.clone()),
                        ("ostemplate", ostemplate),
                        ("rootfs", format!("{storage}:{disk}")),
                        ("net0", format!("name=eth0,bridge={bridge},ip=dhcp")),
                        ("unprivileged", "1".into()),
                    ]);
                    client.create_container(&params, timeout).await?;
                }
            }
        }
    }
    if spec.start {
        client.start(kind.pve(), vmid, timeout).await?;
    }
    Ok(vmid)
}
