//! `POST /nodes/{node}/{qemu|lxc}`: a new guest, its volumes made and its NICs given MACs,
//! reserved under the `create` lock at once and finished (optionally started) by a task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::super::request::ApiRequest;
use super::common::{arm, checked, fault, new_guest, task_type, type_str};
use super::config::materialize;
use super::ostemplate;
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::faults::Op;
use crate::ids::random_uuid;
use crate::model::{lock_message, GuestKind};
use crate::schema::{self, specs};
use crate::state::Shared;
use crate::tasks::{submit, Job};

/// `POST /nodes/{node}/{qemu|lxc}`.
pub(super) async fn create(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
) -> ApiResult<Value> {
    if super::restore::is_restore(req, kind) {
        return super::restore::restore(shared, req, kind).await;
    }
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
    let start = values.remove("start").is_some_and(|v| v == json!(1));
    let imported = match kind {
        GuestKind::Qemu => super::import::resolve(shared, &mut values)?,
        GuestKind::Lxc => Vec::new(),
    };
    for k in [
        "pool",
        "storage",
        "unique",
        "force",
        "archive",
        "bwlimit",
        "live-restore",
        "ha-managed",
        "restore",
        "ignore-unpack-errors",
    ] {
        values.remove(k);
    }
    let password = values.remove("password");
    let keys = values
        .remove("ssh-public-keys")
        .and_then(|v| v.as_str().map(str::to_string));
    let mut missing = None;
    if kind == GuestKind::Lxc {
        let tmpl = values
            .remove("ostemplate")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // PVE checks the storage before forking; the archive itself only when unpacking.
        missing = ostemplate::check(shared, vmid, &tmpl)?;
        values
            .entry("ostype".into())
            .or_insert(json!(ostemplate::ostype(&tmpl)));
        // Unprivileged unless asked otherwise (PVE's create, whatever the schema's default).
        if values.remove("unprivileged").is_none_or(|v| v == json!(1)) {
            values.insert("unprivileged".into(), json!(1));
        }
        values.entry("arch".into()).or_insert(json!("amd64"));
        values
            .entry("rootfs".into())
            .or_insert(json!("local-lvm:4"));
        values
            .entry("hostname".into())
            .or_insert(json!(format!("CT{vmid}")));
        values.entry("memory".into()).or_insert(json!(512));
        values.entry("swap".into()).or_insert(json!(512));
        let _ = password; // PVE sets it inside the container; it is not config.
    }
    let name = values
        .get(if kind == GuestKind::Qemu {
            "name"
        } else {
            "hostname"
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let f = fault(shared, Op::Create, &[vmid], name.as_deref());
    let mut log = Vec::new();
    {
        let mut st = shared.lock();
        // qemu-server `PVE/API2/Qemu.pm` `create_vm` and pve-container `API2/LXC.pm`
        // `create_vm`: `die "$emsg $@"` around `create_and_lock_config`, whose
        // `check_vmid_unused` (pve-cluster `PVE/Cluster.pm`) names the guest already there.
        if let Some(existing) = st.guests.get(&vmid) {
            return Err(ApiError::internal(format!(
                "unable to create {} {vmid} - {} {vmid} already exists on node '{}'",
                type_str(kind),
                type_str(existing.kind),
                existing.node_or(&shared.primary)
            )));
        }
        let mut config = BTreeMap::new();
        for (k, v) in values {
            let v = materialize(shared, &st, kind, vmid, &k, v, &config, &mut log)?;
            config.insert(k, v);
        }
        log.extend(imported);
        if kind == GuestKind::Qemu {
            config
                .entry("smbios1".into())
                .or_insert(json!(format!("uuid={}", random_uuid())));
            config
                .entry("vmgenid".into())
                .or_insert(json!(random_uuid()));
            config
                .entry("meta".into())
                .or_insert(json!(format!("creation-qemu=10.0.2,ctime={}", now_unix())));
        }
        config.insert("lock".into(), json!("create"));
        let mut g = new_guest(shared, &st, kind, vmid, config)?;
        g.busy = Some(task_type(kind, "create").to_string());
        g.authorized_keys = keys;
        st.guests.insert(vmid, g);
        shared.persist(&st);
    }
    let ttype = task_type(kind, "create");
    let mut job = Job::new(
        ttype,
        vmid.to_string(),
        &req.user,
        Box::new(move |st, shared| {
            let Some(g) = st.guests.get_mut(&vmid) else {
                return Err(format!(
                    "unable to create {} {vmid} - lost config",
                    type_str(kind)
                ));
            };
            g.config.remove("lock");
            let mut lines = Vec::new();
            if start {
                g.power_on(Instant::now() + shared.scaled(shared.timings.agent_delay));
                if let Err(e) = shared.boot_guest(st, vmid) {
                    if let Some(g) = st.guests.get_mut(&vmid) {
                        g.power_off();
                    }
                    return Err(format!(
                        "{} {vmid} created, but start failed: {e}",
                        type_str(kind)
                    ));
                }
                lines.push(format!("{} {vmid} started", type_str(kind)));
            }
            Ok(lines)
        }),
    );
    job.held = vec![vmid];
    job.steps = vec![(shared.timings.create, log.join("\n"))];
    job.steps.retain(|(_, l)| !l.is_empty());
    if job.steps.is_empty() {
        job.steps.push((
            shared.timings.create,
            format!("{} {vmid} created", type_str(kind)),
        ));
    }
    job.rollback = Box::new(move |st, _| {
        st.guests.remove(&vmid);
    });
    job.fail = missing;
    arm(&mut job, f, kind, Op::Create, vmid);
    if job.lock_fault.is_some() {
        // The create lock is the new guest's own: a timeout there fails the task the same way.
        job.fail = Some(lock_message(kind, vmid));
        job.lock_fault = None;
    }
    Ok(json!(submit(shared, job).await))
}
