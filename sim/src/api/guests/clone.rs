//! `POST .../clone`: a linked (from a template) or full copy under a new vmid, with new
//! volumes, MACs and identifiers, reserved under the `clone` lock at once and finished by a
//! task.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::super::request::ApiRequest;
use super::super::storage;
use super::common::{
    checked, default_failure, exists_error, fault, guest, human, locked_error, new_guest,
    sync_lock, task_type, type_str, unlock,
};
use crate::error::{ApiError, ApiResult};
use crate::faults::{FaultKind, Op};
use crate::ids::{mac_for, random_uuid};
use crate::model::{disk_size, is_disk_key, Guest, GuestKind};
use crate::schema::{self, specs};
use crate::state::Shared;
use crate::tasks::{submit, Job};

/// `POST .../clone`.
pub(super) async fn clone(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let spec = match kind {
        GuestKind::Qemu => specs::CLONE_QEMU,
        GuestKind::Lxc => specs::CLONE_LXC,
    };
    let values = checked(shared, req, Some(vmid), spec, None)?;
    let newid = values
        .get("newid")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ApiError::param("newid", schema::MISSING))?;
    let name_key = if kind == GuestKind::Qemu {
        "name"
    } else {
        "hostname"
    };
    let new_name = values
        .get(name_key)
        .and_then(Value::as_str)
        .map(str::to_string);
    // qemu-server `PVE/API2/Qemu.pm` `clone_vm`: the local node (or `localhost`) as
    // target is no target; another must be a cluster node.
    let to_node = match values.get("target").and_then(Value::as_str) {
        Some(t) if t != shared.node && t != "localhost" => {
            if !shared.has_node(t) {
                return Err(ApiError::internal(format!("no such cluster node '{t}'")));
            }
            Some(t.to_string())
        }
        _ => None,
    };
    let (is_template, src_lock, src_name, src_local) = {
        let st = shared.lock();
        let src = guest(&st, shared, kind, vmid)?;
        (
            src.template(),
            src.lock_prop(),
            src.name(),
            uses_local_storage(shared, src),
        )
    };
    if let Some(l) = src_lock {
        return Err(ApiError::internal(locked_error(kind, &l)));
    }
    let full = values
        .get("full")
        .map(|v| *v == json!(1))
        .unwrap_or(!is_template)
        || !is_template;
    // PVE's order: the storage exists (and, for a VM, takes images) before the
    // linked-clone check; a container's `rootdir` is found missing by the task.
    let target = values
        .get("storage")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut no_rootdir = None;
    if let Some(s) = &target {
        storage::get(shared, s)?;
        if kind == GuestKind::Qemu && !storage::takes(shared, s, "images") {
            return Err(ApiError::param(
                "storage",
                format!("storage '{s}' does not support vm images"),
            ));
        }
        if to_node.is_some() && !storage::is_shared(shared, s) {
            return Err(ApiError::internal(format!(
                "can't clone to non-shared storage '{s}'"
            )));
        }
        if !full {
            return Err(ApiError::internal(
                "parameter 'storage' not allowed for linked clones",
            ));
        }
        if kind == GuestKind::Lxc && !storage::takes(shared, s, "rootdir") {
            no_rootdir = Some(format!(
                "content type 'rootdir' is not available or configured on storage '{s}'"
            ));
        }
    }
    if let (Some(t), true) = (&to_node, src_local) {
        return Err(ApiError::internal(format!(
            "can't clone {ts} to node '{t}' ({ts} uses local storage)",
            ts = type_str(kind)
        )));
    }
    let f = fault(shared, Op::Clone, &[newid, vmid], new_name.as_deref());
    // A template is cloned under a shared lock (parallel clones are fine); anything else
    // under its exclusive config lock, taken before the worker starts.
    let lock_forced = matches!(f, Some(FaultKind::LockTimeout));
    let holds_src = if !is_template || lock_forced {
        sync_lock(shared, kind, vmid, task_type(kind, "clone"), lock_forced).await?;
        true
    } else {
        false
    };
    let reserve = {
        let mut st = shared.lock();
        let result = (|| {
            if let Some(e) = exists_error(&st, kind, newid, &shared.node) {
                return Err(e);
            }
            let src = guest(&st, shared, kind, vmid)?;
            let (mut cfg, log) = clone_config(src, newid, full, target.as_deref());
            let default_name = match kind {
                GuestKind::Qemu => format!("Copy-of-VM-{src_name}"),
                GuestKind::Lxc => src_name.clone(),
            };
            cfg.insert(
                name_key.into(),
                json!(new_name.clone().unwrap_or(default_name)),
            );
            if let Some(d) = values.get("description") {
                cfg.insert("description".into(), d.clone());
            }
            if kind == GuestKind::Qemu {
                cfg.insert("vmgenid".into(), json!(random_uuid()));
                cfg.insert("smbios1".into(), json!(format!("uuid={}", random_uuid())));
            }
            cfg.insert("lock".into(), json!("clone"));
            let mut g = new_guest(shared, &st, kind, newid, cfg)?;
            g.authorized_keys = src.authorized_keys.clone();
            g.busy = Some(task_type(kind, "clone").to_string());
            st.guests.insert(newid, g);
            Ok(log)
        })();
        if holds_src && result.is_err() {
            unlock(&mut st, vmid);
        }
        if result.is_ok() {
            shared.persist(&st);
        }
        result
    };
    let log = reserve?;
    let moved_to = to_node.as_deref().map(|t| shared.guest_node(t));
    let mut job = Job::new(
        task_type(kind, "clone"),
        vmid.to_string(),
        &req.user,
        Box::new(move |st, _| match st.guests.get_mut(&newid) {
            Some(g) => {
                g.config.remove("lock");
                // The new config moves to the target node once the disks are made.
                if let Some(n) = moved_to {
                    g.node = n;
                }
                Ok(Vec::new())
            }
            None => Err(format!("clone failed: {} {newid} vanished", type_str(kind))),
        }),
    );
    job.held = if holds_src {
        vec![newid, vmid]
    } else {
        vec![newid]
    };
    let duration = if full {
        shared.timings.clone_full
    } else {
        shared.timings.clone_linked
    };
    let per = duration / (log.len().max(1) as u32);
    job.steps = log.into_iter().map(|l| (per, l)).collect();
    if job.steps.is_empty() {
        job.steps
            .push((duration, format!("clone {vmid} -> {newid}")));
    }
    job.rollback = Box::new(move |st, _| {
        st.guests.remove(&newid);
    });
    // A full clone allocates its volume under the storage's lock (each
    // disk's target, the first one's for the queue).
    if full {
        let to = target
            .clone()
            .or_else(|| first_disk_storage(shared, kind, vmid));
        if let Some(to) = to {
            if let Some(hold) = shared.lock().faults.storage_hold(&to) {
                job.storage_lock = Some((to, hold));
            }
        }
    }
    if let Some(FaultKind::TaskFailure { message }) = f {
        job.fail = Some(message.unwrap_or_else(|| default_failure(kind, Op::Clone, newid)));
    }
    if no_rootdir.is_some() {
        job.fail = no_rootdir;
    }
    Ok(json!(submit(shared, job).await))
}

/// Whether a guest has a disk (or an ISO) on a storage that is not shared (qemu-server
/// `check_storage_access_clone`: such a guest cannot be cloned to another node).
fn uses_local_storage(shared: &Shared, g: &Guest) -> bool {
    g.config.iter().any(|(k, v)| {
        let Some(text) = v.as_str() else {
            return false;
        };
        if !is_disk_key(g.kind, k) {
            return false;
        }
        let first = text.split(',').next().unwrap_or(text);
        match first.split_once(':') {
            Some((store, _)) => !storage::is_shared(shared, store),
            // `none`, `cdrom`: no volume.
            None => false,
        }
    })
}

/// The storage of a guest's first disk (sorted by key), where a full clone
/// without `storage` allocates.
fn first_disk_storage(shared: &Shared, kind: GuestKind, vmid: u32) -> Option<String> {
    let st = shared.lock();
    let g = st.guests.get(&vmid)?;
    g.config
        .iter()
        .filter(|(k, v)| {
            is_disk_key(kind, k) && v.as_str().is_some_and(|t| !t.contains("media=cdrom"))
        })
        .find_map(|(_, v)| v.as_str()?.split_once(':').map(|(s, _)| s.to_string()))
}

/// New MACs and volumes for a clone's config: a full clone's volumes on `target` (else
/// each on its source's storage), a linked clone's based on the template's.
fn clone_config(
    src: &Guest,
    newid: u32,
    full: bool,
    target: Option<&str>,
) -> (BTreeMap<String, Value>, Vec<String>) {
    let mut log = Vec::new();
    let mut cfg = BTreeMap::new();
    let mut disk_n = 0;
    for (k, v) in &src.config {
        if k == "template" || k == "lock" {
            continue;
        }
        let Some(text) = v.as_str() else {
            cfg.insert(k.clone(), v.clone());
            continue;
        };
        if is_disk_key(src.kind, k) {
            let (first, rest) = text.split_once(',').unwrap_or((text, ""));
            let source = first.split_once(':').map_or("local-lvm", |(s, _)| s);
            // PVE copies a cloud-init drive even for a linked clone, to `storage` if given.
            let to = target.unwrap_or(source);
            if text.contains("media=cdrom") {
                let new = if first.contains("-cloudinit") {
                    format!("{to}:vm-{newid}-cloudinit,media=cdrom")
                } else {
                    text.to_string()
                };
                cfg.insert(k.clone(), json!(new));
                continue;
            }
            let base = first.split('/').next().unwrap_or(first);
            // A container's volume on ZFS is a subvolume.
            let prefix = match (src.kind, storage::plugin(to)) {
                (GuestKind::Lxc, "zfspool") if full || !src.template() => "subvol",
                _ => "vm",
            };
            let name = format!("{prefix}-{newid}-disk-{disk_n}");
            disk_n += 1;
            let vol = if full || !src.template() {
                log.push(format!("create full clone of drive {k} ({first})"));
                log.push(format!("  Logical volume \"{name}\" created."));
                let size = disk_size(text).unwrap_or(0);
                log.push(format!("transferred 0.0 B of {0} (0.00%)", human(size)));
                log.push(format!("transferred {0} of {0} (100.00%)", human(size)));
                format!("{to}:{name}")
            } else {
                log.push(format!("create linked clone of drive {k} ({first})"));
                log.push(format!("  Logical volume \"{name}\" created."));
                format!("{base}/{name}")
            };
            let vol = if rest.is_empty() {
                vol
            } else {
                format!("{vol},{rest}")
            };
            cfg.insert(k.clone(), json!(vol));
            continue;
        }
        if let Some(index) = k.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) {
            let mac = mac_for(newid, index);
            let parts: Vec<String> = text
                .split(',')
                .map(|p| match p.split_once('=') {
                    Some((key, val)) if val.len() == 17 && val.matches(':').count() == 5 => {
                        format!("{key}={mac}")
                    }
                    _ => p.to_string(),
                })
                .collect();
            cfg.insert(k.clone(), json!(parts.join(",")));
            continue;
        }
        cfg.insert(k.clone(), v.clone());
    }
    (cfg, log)
}
