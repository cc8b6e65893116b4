//! A guest's config: `GET .../config` (with `digest`), `GET .../pending`, `POST` (QEMU, as a
//! task) or `PUT` (at once) `.../config` with `delete` and `digest`, and `PUT .../resize`.
//! Values are written as PVE writes them: a new disk (`local-lvm:8`) becomes a volume, a NIC
//! without a MAC gets one, unknown storages and bridges are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::super::request::{data, ApiRequest};
use super::super::storage;
use super::common::{
    arm, checked, default_failure, fault, guest, human, locked_error, no_config, sync_lock,
    task_type, type_str, unlock,
};
use super::shapes::{ConfigAnswer, PendingEntry};
use crate::error::{ApiError, ApiResult};
use crate::faults::{FaultKind, Op};
use crate::ids::mac_for;
use crate::model::{digest, disk_size, format_size, is_disk_key, parse_size, GuestKind};
use crate::schema::{self, specs};
use crate::state::{Shared, State};
use crate::tasks::{submit, Job};

/// `GET .../config`: the config with `digest`; `cipassword` masked as PVE does.
pub(super) fn get_config(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    checked(shared, req, Some(vmid), specs::CONFIG_GET, None)?;
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let config = g
        .config
        .iter()
        .map(|(k, v)| match k.as_str() {
            "cipassword" => (k.as_str(), json!("**********")),
            _ => (k.as_str(), v.clone()),
        })
        .collect();
    data(ConfigAnswer {
        config,
        digest: digest(&g.config),
    })
}

/// `GET .../pending`: every key as current (changes apply at once here).
pub(super) fn pending(shared: &Arc<Shared>, kind: GuestKind, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    data(
        g.config
            .iter()
            .map(|(key, value)| PendingEntry { key, value })
            .collect::<Vec<_>>(),
    )
}

/// Turns `storage:size` into a fresh volume, `net` without a MAC into one with a MAC, and
/// checks storages and bridges, as PVE does when it writes a config.
#[allow(clippy::too_many_arguments)]
pub(super) fn materialize(
    shared: &Shared,
    st: &State,
    kind: GuestKind,
    vmid: u32,
    key: &str,
    value: Value,
    config: &BTreeMap<String, Value>,
    log: &mut Vec<String>,
) -> ApiResult<Value> {
    let Some(text) = value.as_str().map(str::to_string) else {
        return Ok(value);
    };
    if is_disk_key(kind, key) {
        let (first, rest) = text.split_once(',').unwrap_or((&text, ""));
        if let Some((storage, what)) = first.split_once(':') {
            let is_new = what.parse::<f64>().is_ok() || what == "cloudinit";
            if is_new {
                if !storage::ids(shared).contains(&storage) {
                    return Err(ApiError::internal(format!(
                        "storage '{storage}' does not exist"
                    )));
                }
                let content = match kind {
                    GuestKind::Qemu => "images",
                    GuestKind::Lxc => "rootdir",
                };
                if !storage::takes(shared, storage, content) {
                    let what = if kind == GuestKind::Qemu {
                        "vm images"
                    } else {
                        "container directories"
                    };
                    return Err(ApiError::param(
                        "storage",
                        format!("storage '{storage}' does not support {what}"),
                    ));
                }
                if what == "cloudinit" {
                    return Ok(json!(format!("{storage}:vm-{vmid}-cloudinit,media=cdrom")));
                }
                let gib: f64 = what.parse().unwrap_or(0.0);
                let bytes = (gib * (1u64 << 30) as f64) as u64;
                let n = (0..)
                    .find(|n| {
                        let name = format!("vm-{vmid}-disk-{n}");
                        !config
                            .values()
                            .chain(
                                st.guests
                                    .get(&vmid)
                                    .map(|g| g.config.values())
                                    .into_iter()
                                    .flatten(),
                            )
                            .any(|v| v.as_str().is_some_and(|s| s.contains(&name)))
                    })
                    .unwrap_or(0);
                log.push(format!("  Logical volume \"vm-{vmid}-disk-{n}\" created."));
                let mut out = format!("{storage}:vm-{vmid}-disk-{n}");
                if !rest.is_empty() {
                    let kept: Vec<&str> = rest
                        .split(',')
                        .filter(|p| !p.starts_with("size="))
                        .collect();
                    if !kept.is_empty() {
                        out.push(',');
                        out.push_str(&kept.join(","));
                    }
                }
                out.push_str(&format!(",size={}", format_size(bytes)));
                return Ok(json!(out));
            }
        }
        return Ok(json!(text));
    }
    if let Some(index) = key.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) {
        for part in text.split(',') {
            if let Some(b) = part.strip_prefix("bridge=") {
                if b != "vmbr0" {
                    return Err(ApiError::internal(format!("bridge '{b}' does not exist")));
                }
            }
        }
        let mac = mac_for(vmid, index);
        let out = match kind {
            GuestKind::Qemu => {
                let mut parts: Vec<String> = text.split(',').map(str::to_string).collect();
                if let Some(first) = parts.first_mut() {
                    let model = first.split('=').next().unwrap_or("").to_string();
                    if first.starts_with("model=") {
                        let m = first.trim_start_matches("model=").to_string();
                        *first = format!("{m}={mac}");
                    } else if !first.contains('=') {
                        *first = format!("{model}={mac}");
                    }
                }
                parts.join(",")
            }
            GuestKind::Lxc => {
                let mut t = text.clone();
                if !t.split(',').any(|p| p.starts_with("hwaddr=")) {
                    t.push_str(&format!(",hwaddr={mac}"));
                }
                if !t.split(',').any(|p| p.starts_with("type=")) {
                    t.push_str(",type=veth");
                }
                t
            }
        };
        return Ok(json!(out));
    }
    Ok(json!(text))
}

/// `POST` (qemu, async) or `PUT` (sync) `.../config`.
pub(super) async fn set_config(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    is_async: bool,
) -> ApiResult<Value> {
    let mut values = checked(shared, req, Some(vmid), specs::CONFIG_SET, Some(kind))?;
    values.remove("vmid");
    let delete: Vec<String> = values
        .remove("delete")
        .and_then(|v| v.as_str().map(str::to_string))
        .map(|s| {
            s.split([',', ';', ' ', '\0'])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let want_digest = values
        .remove("digest")
        .and_then(|v| v.as_str().map(str::to_string));
    let skiplock = values.remove("skiplock").is_some_and(|v| v == json!(1));
    for k in ["revert", "force", "background_delay"] {
        values.remove(k);
    }
    let mut errors = BTreeMap::new();
    for d in &delete {
        if schema::prop(kind, d).is_none() {
            errors.insert("delete".to_string(), format!("unknown option '{d}'"));
        } else if values.contains_key(d) {
            errors.insert(
                "delete".to_string(),
                format!("you can't use '-{d}' and -delete {d}' at the same time"),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::params(errors));
    }
    // qemu-server's `check_vm_modify_config_perm`: `lock` falls through to "only root"
    // (pve-container checks the lock first and offers no `skiplock` at all).
    let touches_lock = values.contains_key("lock") || delete.iter().any(|d| d == "lock");
    if kind == GuestKind::Qemu && touches_lock && req.user != super::common::ROOT {
        return Err(ApiError::internal("only root can set 'lock' config"));
    }
    let skiplock = skiplock && kind == GuestKind::Qemu;
    if values.is_empty() && delete.is_empty() {
        return Err(ApiError::internal("no options specified"));
    }
    let name = {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        if let Some(d) = &want_digest {
            if *d != digest(&g.config) {
                return Err(ApiError::internal(
                    "checksum mismatch (file change by other user?)",
                ));
            }
        }
        g.name()
    };
    let f = fault(shared, Op::Config, &[vmid], Some(&name));
    let summary: Vec<String> = values
        .iter()
        .map(|(k, v)| {
            let v = if k == "cipassword" {
                "<hidden>".to_string()
            } else {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            };
            format!("-{k} {v}")
        })
        .chain(delete.iter().map(|d| format!("-delete {d}")))
        .collect();
    let shared2 = shared.clone();
    let change = move |st: &mut State| -> Result<Vec<String>, ApiError> {
        let Some(g) = st.guests.get(&vmid).filter(|g| g.kind == kind) else {
            return Err(no_config(&shared2, kind, vmid));
        };
        if let (Some(l), false) = (g.lock_prop(), skiplock) {
            return Err(ApiError::internal(locked_error(kind, &l)));
        }
        let mut cfg = g.config.clone();
        let mut log = Vec::new();
        for d in &delete {
            cfg.remove(d);
        }
        for (k, v) in values {
            let v = materialize(&shared2, st, kind, vmid, &k, v, &cfg, &mut log)?;
            cfg.insert(k, v);
        }
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.config = cfg;
        }
        Ok(log)
    };
    if is_async {
        let mut job = Job::new(
            task_type(kind, "config"),
            vmid.to_string(),
            &req.user,
            Box::new(move |st, _| change(st).map_err(|e| e.message)),
        );
        job.lock = vec![vmid];
        job.steps = vec![(
            shared.timings.config,
            format!("update VM {vmid}: {}", summary.join(" ")),
        )];
        arm(&mut job, f, kind, Op::Config, vmid);
        return Ok(json!(submit(shared, job).await));
    }
    let forced = matches!(f, Some(FaultKind::LockTimeout));
    sync_lock(shared, kind, vmid, "config", forced).await?;
    let mut st = shared.lock();
    let result = match f {
        Some(FaultKind::TaskFailure { message }) => Err(ApiError::internal(
            message.unwrap_or_else(|| default_failure(kind, Op::Config, vmid)),
        )),
        _ => change(&mut st).map(|_| Value::Null),
    };
    unlock(&mut st, vmid);
    shared.persist(&st);
    result
}

/// `PUT .../resize`: `size` absolute (`32G`) or relative (`+10G`); never shrinks.
pub(super) async fn resize(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let values = checked(shared, req, Some(vmid), specs::RESIZE, None)?;
    let disk = values
        .get("disk")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let size = values
        .get("size")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let valid_disk = match kind {
        GuestKind::Qemu => is_disk_key(kind, &disk),
        GuestKind::Lxc => disk == "rootfs" || is_disk_key(kind, &disk),
    };
    if !valid_disk {
        return Err(ApiError::param(
            "disk",
            format!("value '{disk}' does not have a value in the enumeration '{}'", match kind {
                GuestKind::Qemu => "ide0, ide1, ide2, ide3, scsi0, ..., scsi30, virtio0, ..., virtio15, sata0, ..., sata5, efidisk0, tpmstate0",
                GuestKind::Lxc => "rootfs, mp0, ..., mp255",
            }),
        ));
    }
    // qemu-server (`PVE/API2/Qemu.pm` `resize_vm`) checks the disk and the size inside the
    // worker: a bad request is answered 200 and its task fails. pve-container
    // (`PVE/API2/LXC.pm` `resize_vm`, `$load_and_check`) checks before forking: a 500.
    let refuse = |msg: String| -> ApiResult<Value> { Err(ApiError::internal(msg)) };
    let found = {
        let st = shared.lock();
        guest(&st, shared, kind, vmid).map(|g| {
            let prop = g
                .config
                .get(&disk)
                .and_then(Value::as_str)
                .map(str::to_string);
            (
                prop.as_deref().and_then(disk_size).unwrap_or(0),
                g.name(),
                prop,
            )
        })
    };
    let (cur, name, prop) = match found {
        Ok(f) => f,
        // qemu-server loads the config in the worker too: a missing VM is a failed task.
        Err(e) if kind == GuestKind::Qemu => {
            let msg = e.message.trim_end().to_string();
            let job = Job::new(
                "resize",
                vmid.to_string(),
                &req.user,
                Box::new(move |_, _| Err(msg)),
            );
            return Ok(json!(submit(shared, job).await));
        }
        Err(e) => return Err(e),
    };
    let (relative, amount) = match size.strip_prefix('+') {
        Some(s) => (true, s),
        None => (false, size.as_str()),
    };
    // A bare number is bytes, as PVE reads it.
    let amount = parse_size(amount)
        .ok_or_else(|| ApiError::param("size", "value does not match the regex pattern"))?;
    let new = if relative {
        cur.saturating_add(amount)
    } else {
        amount
    };
    let problem = match &prop {
        None => Some(format!("disk '{disk}' does not exist")),
        Some(p) if kind == GuestKind::Qemu && p.contains("media=cdrom") => {
            Some("you can't resize a cdrom".to_string())
        }
        Some(_) if new < cur => Some(match kind {
            GuestKind::Qemu => "shrinking disks is not supported".to_string(),
            GuestKind::Lxc => "unable to shrink disk size".to_string(),
        }),
        Some(_) if new == cur && kind == GuestKind::Lxc => {
            Some("disk is already at specified size".to_string())
        }
        Some(_) => None,
    };
    if let Some(msg) = problem {
        if kind == GuestKind::Lxc {
            return refuse(msg);
        }
        let job = Job::new(
            "resize",
            vmid.to_string(),
            &req.user,
            Box::new(move |_, _| Err(msg)),
        );
        return Ok(json!(submit(shared, job).await));
    }
    let prop = prop.unwrap_or_default();
    if new == cur {
        // qemu-server: `return if $size == $newsize;`, the task ends OK with nothing done.
        let job = Job::new(
            "resize",
            vmid.to_string(),
            &req.user,
            Box::new(|_, _| Ok(Vec::new())),
        );
        return Ok(json!(submit(shared, job).await));
    }
    let f = fault(shared, Op::Resize, &[vmid], Some(&name));
    let volid = prop.split(',').next().unwrap_or("").to_string();
    let line = format!(
        "  Size of logical volume pve/{} changed from {} to {}.",
        volid.rsplit(['/', ':']).next().unwrap_or(""),
        human(cur),
        human(new)
    );
    let mut job = Job::new(
        "resize",
        vmid.to_string(),
        &req.user,
        Box::new(move |st, _| {
            let Some(g) = st.guests.get_mut(&vmid) else {
                return Err(format!("{} {vmid} does not exist", type_str(kind)));
            };
            let Some(p) = g
                .config
                .get(&disk)
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return Err(format!("disk '{disk}' does not exist"));
            };
            let mut parts: Vec<String> = p
                .split(',')
                .filter(|x| !x.starts_with("size="))
                .map(str::to_string)
                .collect();
            parts.push(format!("size={}", format_size(new)));
            g.config.insert(disk.clone(), json!(parts.join(",")));
            Ok(vec!["  Logical volume pve/resize successfully resized."
                .replace("resize", &format!("vm-{vmid}-disk"))])
        }),
    );
    job.lock = vec![vmid];
    job.steps = vec![(shared.timings.resize, line)];
    arm(&mut job, f, kind, Op::Resize, vmid);
    Ok(json!(submit(shared, job).await))
}
