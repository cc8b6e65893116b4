//! Provisioning a guest: find the template, clone it (a VM) or create from it
//! (a container) under a vmid that is recorded before the guest is made,
//! adopt only this state's own guest, then size and mark it; in a cluster, on the node
//! `target_node:` or `placement:` says (see `cluster`).

use std::time::{Duration, Instant};

use engine::executor::{ActionCall, ActionError, ActionErrorKind, ActionOutput, CloneClass};
use engine::ownership::{self, Claim};
use serde_json::Value;

use super::{kind_of, PveRunner};
use crate::pve::{CloneMode, GuestKind};

/// How a new guest is made once its vmid is picked and recorded.
enum Make {
    /// A clone of template `0` (VMs).
    Clone(u32),
    /// `POST /lxc` with these parameters, `vmid` added (containers).
    Create(Vec<(&'static str, String)>),
}

impl PveRunner {
    /// The vmid of the `kind` template named `image`.
    pub(super) async fn template(&self, kind: GuestKind, image: &str) -> Result<u32, ActionError> {
        let key = (kind, image.to_string());
        if let Some(id) = self
            .templates
            .lock()
            .ok()
            .and_then(|t| t.get(&key).copied())
        {
            return Ok(id);
        }
        let guests = self.client.guests().await?;
        let found = guests
            .iter()
            .find(|g| g.template && g.kind == kind && g.name == image)
            .ok_or_else(|| {
                let names: Vec<&str> = guests
                    .iter()
                    .filter(|g| g.template && g.kind == kind)
                    .map(|g| g.name.as_str())
                    .collect();
                ActionError::new(format!(
                    "no {} template named '{image}' on node {} (templates: {})",
                    kind.segment(),
                    self.client.node(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })?
            .vmid;
        if let Ok(mut t) = self.templates.lock() {
            t.insert(key, found);
        }
        Ok(found)
    }

    pub(super) async fn provision(&self, call: &ActionCall) -> Result<ActionOutput, ActionError> {
        let node = &call.node;
        let kind = kind_of(node);
        // Refused before anything is made.
        let pull = self.pull_for(call)?;
        let size = (self.size_for)(node).map_err(ActionError::new)?;
        let image = node.image.as_deref().ok_or_else(|| {
            ActionError::new(format!(
                "node '{}' has no image: set `image:` in the manifest",
                node.name
            ))
        })?;
        let make = match kind {
            GuestKind::Qemu => Make::Clone(self.template(kind, image).await?),
            GuestKind::Lxc => Make::Create(self.container_params(call, image, size).await?),
        };

        // A guest already there under this node's vmid is adopted only when
        // it is this state's (an earlier run of it, or a clone that was in
        // flight when it stopped); anyone else's is never touched.
        let existing = match call.vm_id {
            Some(id) => self.inspect(kind, id).await?,
            None => None,
        };
        // How long the clone (or create) itself took, for the clone limit.
        let mut made_in = None;
        let (vmid, unmarked) = match existing {
            Some(found) => match found.standing(call) {
                Ok(()) => {
                    tracing::info!("{}: adopting existing guest {}", node.name, found.vmid);
                    call.facts.log(format!(
                        "adopting guest {} left by an earlier run",
                        found.vmid
                    ));
                    self.client
                        .wait_unlocked(kind, found.vmid, call.timeout)
                        .await?;
                    (found.vmid, found.marker.is_none())
                }
                // A vmid PVE picked for an earlier try (a clone that lost a
                // race, cut off before the next pick was recorded): someone
                // else's now, so pick again.
                Err(why) if node.vmid.is_none() => {
                    call.facts.log(format!("{why}: picking another vmid"));
                    let (vmid, took) = self.make_new(call, kind, &make, None).await?;
                    made_in = Some(took);
                    (vmid, false)
                }
                Err(why) => {
                    return Err(ActionError::new(format!(
                        "{why}: choose another vmid for '{}' (or --vm-id {}=ID){}",
                        node.name,
                        node.name,
                        match &found.claim(&call.owner, &node.name) {
                            Claim::Foreign(m) if m.manifest != "?" => format!(
                                ", or remove it with `driver destroy -M {} -H {}`",
                                m.manifest, m.host
                            ),
                            _ => String::new(),
                        }
                    )))
                }
            },
            None => {
                let (vmid, took) = self.make_new(call, kind, &make, node.vmid).await?;
                made_in = Some(took);
                if let Make::Create(_) = make {
                    // Created whole: size, network, marker and tag were in the create call.
                    return Ok(ActionOutput {
                        vm_id: Some(vmid),
                        made_in,
                        ..ActionOutput::default()
                    });
                }
                (vmid, false)
            }
        };
        let cfg = self.client.config(kind, vmid).await?;

        let mut params = vec![
            ("cores", size.cores.to_string()),
            ("memory", size.memory_mb.to_string()),
            // The tag lets a state's guests be found in one listing.
            (
                "tags",
                ownership::with_tag(
                    cfg.get("tags").and_then(Value::as_str).unwrap_or(""),
                    &call.owner,
                ),
            ),
        ];
        if unmarked {
            // Made before markers: it gets one now.
            params.push(("description", call.owner.marker(&node.name).description()));
        }
        match kind {
            GuestKind::Qemu => {
                params.push(("net0", format!("virtio,bridge={}", self.setup.bridge)));
                params.push(("ipconfig0", "ip=dhcp".into()));
                params.push(("agent", "1".into()));
                params.push(("ciuser", self.setup.ci_user.clone()));
                if !self.setup.ssh_keys.is_empty() {
                    // PVE wants the keys URL-encoded inside the form value.
                    let keys = self.setup.ssh_keys.join("\n");
                    let enc: String = form_urlencoded::byte_serialize(keys.as_bytes()).collect();
                    params.push(("sshkeys", enc.replace('+', "%20")));
                }
                if let Some(p) = pull {
                    // Its user-data replaces PVE's own (which ciuser/sshkeys make), so it
                    // carries the same user and keys.
                    params.push(("cicustom", self.pull_snippet(p, call, vmid).await?));
                }
            }
            // Its network came with its create call: setting net0 again would give it a
            // new MAC (and another DHCP lease) on PVE.
            GuestKind::Lxc => {}
        }
        self.client.set_config(kind, vmid, &params).await?;
        let disk = node.disk.unwrap_or(size.disk_gb);
        if let Some(key) = boot_disk(kind, &cfg) {
            self.client.resize(kind, vmid, &key, disk).await?;
        }
        Ok(ActionOutput {
            vm_id: Some(vmid),
            made_in,
            ..ActionOutput::default()
        })
    }

    /// Which clone limit `node`'s guest counts against: its storage's on
    /// `host`, adaptive unless it is a linked clone (a snapshot of the
    /// template, not a copy). Containers are created, not cloned, but
    /// allocate their disk under the same storage lock.
    pub(super) fn clone_class_of(
        &self,
        node: &engine::manifest::NodeSpec,
        host: &str,
    ) -> CloneClass {
        let disks = self.host_disks();
        let (storage, adaptive) = match kind_of(node) {
            GuestKind::Lxc => (engine::placement::ct_storage(node, &disks), true),
            GuestKind::Qemu => match engine::placement::clone_storage(node, &disks) {
                Ok(s) => (s, disks.full_clone),
                Err(_) => (None, true),
            },
        };
        CloneClass {
            key: format!("{host}/{}", storage.unwrap_or("(template's storage)")),
            adaptive,
        }
    }

    /// What the node file says about where disks go (see `engine::placement`).
    pub(super) fn host_disks(&self) -> engine::placement::HostDisks<'_> {
        engine::placement::HostDisks {
            datastore: self.setup.datastore.as_deref(),
            full_clone: self.setup.full_clone,
            file: &self.setup.node_file,
        }
    }

    /// Picks a vmid (`explicit`: the manifest's, else the cluster's next
    /// free one), records it, then clones or creates. Two guests racing for
    /// the same free id: the loser asks again. Returns the vmid and how
    /// long the clone or create took. A lock timeout (the storage's, or a
    /// config's) is the executor's to try again, with fewer clones at once.
    async fn make_new(
        &self,
        call: &ActionCall,
        kind: GuestKind,
        make: &Make,
        explicit: Option<u32>,
    ) -> Result<(u32, Duration), ActionError> {
        let host = self.host_disks();
        let on = self.cluster_node_for(call).await?;
        let mut tries = 0;
        // Above the last id lost to another clone, once one was lost.
        let mut floor = None;
        loop {
            tries += 1;
            let id = match explicit {
                Some(id) => id,
                None => self.client.next_id_from(floor).await?,
            };
            // Durable before the clone starts: a crash from here on leaves a
            // vmid in state that destroy and resume can find.
            call.facts.vm_id(id).await?;
            let started = Instant::now();
            let made = match make {
                Make::Clone(template) => {
                    let marker = call.owner.marker(&call.node.name).description();
                    self.client
                        .clone_guest_to(
                            kind,
                            *template,
                            id,
                            &call.node.name,
                            Some(&marker),
                            clone_mode(call, &host)?,
                            on.as_deref(),
                            call.timeout,
                        )
                        .await
                }
                Make::Create(params) => {
                    let mut p = vec![("vmid", id.to_string())];
                    p.extend(params.iter().cloned());
                    self.client
                        .create_container_on(on.as_deref(), &p, call.timeout)
                        .await
                }
            };
            match made {
                Ok(()) => return Ok((id, started.elapsed())),
                Err(e) if e.is_lock_timeout() => {
                    return Err(ActionError::from_source(ActionErrorKind::Busy, e))
                }
                Err(e) if explicit.is_none() && tries < MAX_MAKE_TRIES && e.is_vmid_taken() => {
                    call.facts.log(format!(
                        "vmid {id} was taken meanwhile; asking PVE for another"
                    ));
                    // Above it by a step of this node's own, so that the
                    // racers that lost together do not all ask for the same
                    // next id again (twenty at once took twenty rounds).
                    floor = Some(id.saturating_add(1 + spread(&call.node.name)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// How a node is cloned: linked, or full onto its storage. Checked before
/// the run too; a nested driver's manifest comes from its parent.
fn clone_mode<'a>(
    call: &'a ActionCall,
    host: &engine::placement::HostDisks<'a>,
) -> Result<CloneMode<'a>, ActionError> {
    match engine::placement::clone_storage(&call.node, host) {
        Ok(storage) if host.full_clone => Ok(CloneMode::Full { storage }),
        Ok(_) => Ok(CloneMode::Linked),
        Err(e) => Err(ActionError::new(format!("{e}: {}", e.help()))),
    }
}

/// Clones or creates whose picked vmid another guest took first, before giving up:
/// each retry asks from above the lost id, so racers spread out.
const MAX_MAKE_TRIES: u32 = 10;

/// 0..32, from a node's name: how far above a lost vmid it asks again.
fn spread(name: &str) -> u32 {
    // FNV-1a: stable, and enough to tell sibling names apart.
    let h = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h % 32
}

/// The disk a guest boots from, as its config names it.
fn boot_disk(kind: GuestKind, cfg: &Value) -> Option<String> {
    let keys: &[&str] = match kind {
        GuestKind::Qemu => &["scsi0", "virtio0", "sata0", "ide0"],
        GuestKind::Lxc => &["rootfs"],
    };
    keys.iter()
        .find(|k| cfg.get(**k).is_some())
        .map(|k| k.to_string())
}
