//! Restores: `POST /nodes/{node}/qemu` with `archive=` and `POST /nodes/{node}/lxc` with
//! `restore=1` and the archive as `ostemplate` (qemu-server `API2/Qemu.pm` `create_vm`,
//! pve-container `API2/LXC.pm`): a guest made from a backup ([`super::super::vzdump`]), or an
//! existing one replaced with `force=1` (not while it runs; its snapshots go, as its volumes
//! do on PVE). The config comes back (its volumes renamed to the new vmid, moved to
//! `storage` when given, other create parameters applied over it) and so does the guest's
//! directory tree, host key included. The guest is reserved under the `create` lock until
//! the `qmrestore`/`vzrestore` task ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::super::request::ApiRequest;
use super::super::vzdump::backup_file;
use super::common::{arm, checked, fault, new_guest, task_type, type_str};
use crate::error::{ApiError, ApiResult};
use crate::faults::Op;
use crate::model::{is_disk_key, GuestKind};
use crate::schema::{self, specs};
use crate::state::Shared;
use crate::tasks::{submit, Job};
use crate::trees::{self, Archive};

/// Whether a create request is a restore.
pub(super) fn is_restore(req: &ApiRequest, kind: GuestKind) -> bool {
    match kind {
        GuestKind::Qemu => req.params.get("archive").is_some(),
        GuestKind::Lxc => req.params.flag("restore"),
    }
}

/// A volume of the archive's guest as the restored guest's: its vmid in the name, on
/// `storage` when given.
fn remap(prop: &str, from: u32, to: u32, storage: Option<&str>) -> String {
    let (vol, opts) = prop.split_once(',').map_or((prop, ""), |(v, o)| (v, o));
    let Some((store, name)) = vol.split_once(':') else {
        return prop.to_string();
    };
    if vol == "none" || opts.contains("media=cdrom") {
        return prop.to_string();
    }
    let name = name.replace(&format!("vm-{from}-"), &format!("vm-{to}-"));
    let store = storage.unwrap_or(store);
    if opts.is_empty() {
        format!("{store}:{name}")
    } else {
        format!("{store}:{name},{opts}")
    }
}

/// `POST /nodes/{node}/{qemu|lxc}` restoring a backup.
pub(super) async fn restore(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
) -> ApiResult<Value> {
    let spec = match kind {
        GuestKind::Qemu => specs::CREATE_QEMU,
        GuestKind::Lxc => specs::CREATE_LXC,
    };
    let mut values = checked(shared, req, None, spec, Some(kind))?;
    let vmid = values
        .remove("vmid")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ApiError::param("vmid", schema::MISSING))?;
    let take = |values: &mut BTreeMap<String, Value>, k: &str| {
        values
            .remove(k)
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let flag = |values: &mut BTreeMap<String, Value>, k: &str| {
        values.remove(k).is_some_and(|v| v == json!(1))
    };
    let archive = match kind {
        GuestKind::Qemu => take(&mut values, "archive"),
        GuestKind::Lxc => take(&mut values, "ostemplate"),
    }
    .unwrap_or_default();
    let force = flag(&mut values, "force");
    let start = flag(&mut values, "start");
    let unique = flag(&mut values, "unique");
    let storage = take(&mut values, "storage");
    values.remove("restore");
    for k in [
        "pool",
        "bwlimit",
        "live-restore",
        "ha-managed",
        "ignore-unpack-errors",
    ] {
        if values.contains_key(k) {
            return Err(ApiError::param(
                k,
                "pvesim does not model this option on restore",
            ));
        }
    }
    for k in values.keys() {
        if is_disk_key(kind, k) {
            return Err(ApiError::param(k, "option conflicts with option 'archive'"));
        }
    }
    if let Some(s) = &storage {
        let content = match kind {
            GuestKind::Qemu => "images",
            GuestKind::Lxc => "rootdir",
        };
        if !super::super::storage::takes(shared, s, content) {
            return Err(ApiError::internal(format!("storage '{s}' does not exist")));
        }
    }
    let ts = type_str(kind);
    let emsg = format!("unable to restore {ts} {vmid} -");
    let Some((path, akind, from)) = backup_file(shared, &archive) else {
        return Err(ApiError::internal(format!(
            "volume '{archive}' does not exist"
        )));
    };
    if akind != kind {
        return Err(ApiError::internal(format!(
            "{emsg} archive '{archive}' is a {} backup",
            type_str(akind)
        )));
    }
    let name = values
        .get(if kind == GuestKind::Qemu {
            "name"
        } else {
            "hostname"
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let f = fault(shared, Op::Restore, &[vmid], name.as_deref());
    let existed = {
        let mut st = shared.lock();
        match st.guests.get_mut(&vmid) {
            Some(g) if !(force && g.kind == kind) => {
                let exists = format!(
                    "{} {vmid} already exists on node '{}'",
                    type_str(g.kind),
                    shared.node
                );
                return Err(ApiError::internal(match kind {
                    GuestKind::Qemu => format!("{emsg} {exists}"),
                    GuestKind::Lxc => exists,
                }));
            }
            Some(g) => {
                if kind == GuestKind::Lxc && g.running {
                    return Err(ApiError::internal("can't overwrite running container"));
                }
                if let Some(l) = g.lock_prop() {
                    return Err(ApiError::internal(format!("{emsg} {ts} is locked ({l})")));
                }
                if g.busy.is_some() {
                    return Err(ApiError::internal(crate::model::lock_message(kind, vmid)));
                }
                g.config.insert("lock".into(), json!("create"));
                g.busy = Some(task_type(kind, "restore").to_string());
                true
            }
            None => {
                let config = BTreeMap::from([("lock".to_string(), json!("create"))]);
                let mut g = new_guest(shared, &st, kind, vmid, config)?;
                g.busy = Some(task_type(kind, "restore").to_string());
                st.guests.insert(vmid, g);
                false
            }
        }
    };
    {
        let st = shared.lock();
        shared.persist(&st);
    }
    let archive2 = archive.clone();
    let mut job = Job::new(
        task_type(kind, "restore"),
        vmid.to_string(),
        &req.user,
        Box::new(move |st, shared| {
            let Some(g) = st.guests.get_mut(&vmid) else {
                return Err(format!("{emsg} lost config"));
            };
            if g.running {
                g.config.remove("lock");
                return Err(format!("{emsg} vm is running"));
            }
            let a = Archive::read(&path).map_err(|e| format!("{emsg} {e}"))?;
            let mut config: BTreeMap<String, Value> = a
                .config
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) if is_disk_key(kind, k) => {
                        (k.clone(), json!(remap(s, from, vmid, storage.as_deref())))
                    }
                    _ => (k.clone(), v.clone()),
                })
                .collect();
            if unique {
                for (k, v) in config.iter_mut() {
                    let Some(i) = k.strip_prefix("net").and_then(|i| i.parse::<u32>().ok()) else {
                        continue;
                    };
                    if let Some(s) = v.as_str() {
                        *v = json!(new_mac(s, &crate::ids::mac_for(vmid, i)));
                    }
                }
            }
            for (k, v) in &values {
                config.insert(k.clone(), v.clone());
            }
            a.unpack(&shared.ssh.guest_dir(vmid))
                .map_err(|e| format!("{emsg} {e}"))?;
            for s in g.snapshots.keys() {
                let _ = trees::remove_tree(&shared.ssh.snapshot_dir(vmid, s));
            }
            g.snapshots.clear();
            g.config = config;
            // The restored tree holds the host key; the boot reads it from there.
            g.host_key = None;
            let mut lines = vec![format!("restore vma archive: {archive2}")];
            if start {
                g.power_on(Instant::now() + shared.scaled(shared.timings.agent_delay));
                if let Err(e) = shared.boot_guest(st, vmid) {
                    if let Some(g) = st.guests.get_mut(&vmid) {
                        g.power_off();
                    }
                    return Err(format!("{ts} {vmid} restored, but start failed: {e}"));
                }
                lines.push(format!("{ts} {vmid} started"));
            }
            Ok(lines)
        }),
    );
    job.held = vec![vmid];
    job.steps = vec![(
        shared.timings.create,
        format!("restoring '{archive}' now.."),
    )];
    job.rollback = Box::new(move |st, _| {
        // PVE leaves a failed restore's guest "NOT cleaned up"; a new one here goes, so no
        // guest without a config is left behind.
        if existed {
            if let Some(g) = st.guests.get_mut(&vmid) {
                g.config.remove("lock");
            }
        } else {
            st.guests.remove(&vmid);
        }
    });
    arm(&mut job, f, kind, Op::Restore, vmid);
    Ok(json!(submit(shared, job).await))
}

/// A NIC's property with its MAC replaced.
fn new_mac(prop: &str, mac: &str) -> String {
    prop.split(',')
        .map(|p| match p.split_once('=') {
            Some((k, v)) if v.len() == 17 && v.matches(':').count() == 5 && k != "bridge" => {
                format!("{k}={mac}")
            }
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_follow_the_new_vmid() {
        assert_eq!(
            remap("local-lvm:vm-100-disk-0,size=8G", 100, 200, None),
            "local-lvm:vm-200-disk-0,size=8G"
        );
        assert_eq!(
            remap("local-lvm:vm-100-disk-0", 100, 200, Some("local-zfs")),
            "local-zfs:vm-200-disk-0"
        );
        assert_eq!(remap("none,media=cdrom", 1, 2, None), "none,media=cdrom");
        assert_eq!(
            new_mac("virtio=BC:24:11:00:00:01,bridge=vmbr0", "BC:24:11:AA:BB:CC"),
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0"
        );
    }
}
