//! `POST .../{vmid}/migrate`: a guest moves to another cluster node (qemu-server and
//! pve-container `migrate_vm`). What PVE checks before forking its worker answers at once;
//! the task (`qmigrate`, `vzmigrate`) takes the guest's config lock and, when its time is up,
//! the guest is on the target node (its volumes stay where they are: pvesim does not copy
//! local disks, it only moves the config, as for shared storage).

use std::sync::Arc;

use serde_json::{json, Value};

use super::super::request::ApiRequest;
use super::common::{checked, guest, locked_error, type_str};
use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::schema::specs;
use crate::state::Shared;
use crate::tasks::{submit, Job};

pub(super) async fn migrate(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let spec = match kind {
        GuestKind::Qemu => specs::MIGRATE_QEMU,
        GuestKind::Lxc => specs::MIGRATE_LXC,
    };
    let values = checked(shared, req, Some(vmid), spec, None)?;
    let flag = |k: &str| values.get(k).is_some_and(|v| *v == json!(1));
    let target = values
        .get("target")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if target == shared.node {
        return Err(ApiError::param("target", "target is local node."));
    }
    if !shared.has_node(&target) {
        return Err(ApiError::internal(format!(
            "no such cluster node '{target}'"
        )));
    }
    let running = {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        if let Some(l) = g.lock_prop() {
            return Err(ApiError::internal(locked_error(kind, &l)));
        }
        g.running
    };
    let mut fail = None;
    if running {
        match kind {
            GuestKind::Qemu if !flag("online") => {
                return Err(ApiError::internal(
                    "can't migrate running VM without --online",
                ))
            }
            GuestKind::Lxc if !flag("online") && !flag("restart") => {
                return Err(ApiError::internal(
                    "can't migrate running container without --online or --restart",
                ))
            }
            // pve-container `PVE/LXC/Migrate.pm`: no live migration of containers.
            GuestKind::Lxc if !flag("restart") => {
                fail = Some("lxc live migration is currently not implemented".to_string());
            }
            _ => {}
        }
    }
    let (ttype, node) = (
        match kind {
            GuestKind::Qemu => "qmigrate",
            GuestKind::Lxc => "vzmigrate",
        },
        shared.node.clone(),
    );
    let moved_to = shared.guest_node(&target);
    let to = target.clone();
    let mut job = Job::new(
        ttype,
        vmid.to_string(),
        &req.user,
        Box::new(move |st, _| match st.guests.get_mut(&vmid) {
            Some(g) => {
                g.node = moved_to;
                Ok(vec![format!(
                    "migration finished successfully ({node} -> {to})"
                )])
            }
            None => Err(format!("{} {vmid} vanished", type_str(kind))),
        }),
    );
    job.lock = vec![vmid];
    job.fail = fail;
    job.steps = vec![(
        shared.timings.clone_linked,
        format!(
            "starting migration of {} {vmid} to node '{target}'",
            type_str(kind)
        ),
    )];
    Ok(json!(submit(shared, job).await))
}
