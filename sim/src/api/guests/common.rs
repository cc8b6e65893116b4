//! What the guest handlers share: PVE's wording (type names, task types, "does not exist",
//! "is locked", default failures), looking a guest up, checking parameters with the path's
//! own, firing faults, making a new guest, and the config lock taken for synchronous changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::super::request::ApiRequest;
use crate::error::{ApiError, ApiResult};
use crate::faults::{FaultKind, GuestCtx, Op};
use crate::model::{lock_message, Guest, GuestKind};
use crate::schema::{validate, ParamSpec};
use crate::state::{Shared, State};
use crate::tasks::{self, Job};

/// The one user PVE lets skip a guest's lock or set its `lock` property: `root@pam`
/// logged in with its password (a ticket), not one of its API tokens.
pub(super) const ROOT: &str = "root@pam";

/// `VM` or `CT`, as PVE's messages name a guest.
pub(super) fn type_str(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "VM",
        GuestKind::Lxc => "CT",
    }
}

/// The task type of an operation (`qmclone`, `vzstart`, ...).
pub(super) fn task_type(kind: GuestKind, op: &str) -> &'static str {
    match (kind, op) {
        (GuestKind::Qemu, "create") => "qmcreate",
        (GuestKind::Qemu, "clone") => "qmclone",
        (GuestKind::Qemu, "config") => "qmconfig",
        (GuestKind::Qemu, "start") => "qmstart",
        (GuestKind::Qemu, "stop") => "qmstop",
        (GuestKind::Qemu, "shutdown") => "qmshutdown",
        (GuestKind::Qemu, "reboot") => "qmreboot",
        (GuestKind::Qemu, "delete") => "qmdestroy",
        (GuestKind::Lxc, "create") => "vzcreate",
        (GuestKind::Lxc, "clone") => "vzclone",
        (GuestKind::Lxc, "start") => "vzstart",
        (GuestKind::Lxc, "stop") => "vzstop",
        (GuestKind::Lxc, "shutdown") => "vzshutdown",
        (GuestKind::Lxc, "reboot") => "vzreboot",
        (GuestKind::Lxc, "delete") => "vzdestroy",
        (GuestKind::Qemu, "snapshot") => "qmsnapshot",
        (GuestKind::Qemu, "rollback") => "qmrollback",
        (GuestKind::Qemu, "delsnapshot") => "qmdelsnapshot",
        (GuestKind::Qemu, "restore") => "qmrestore",
        (GuestKind::Lxc, "snapshot") => "vzsnapshot",
        (GuestKind::Lxc, "rollback") => "vzrollback",
        (GuestKind::Lxc, "delsnapshot") => "vzdelsnapshot",
        (GuestKind::Lxc, "restore") => "vzrestore",
        _ => "resize",
    }
}

/// PVE's error for a guest that does not exist (as the kind's config file).
pub(super) fn no_config(shared: &Shared, kind: GuestKind, vmid: u32) -> ApiError {
    let dir = match kind {
        GuestKind::Qemu => "qemu-server",
        GuestKind::Lxc => "lxc",
    };
    ApiError::internal(format!(
        "Configuration file 'nodes/{}/{dir}/{vmid}.conf' does not exist",
        shared.node
    ))
}

/// The guest, if it exists on this node and is of this kind (PVE looks for the kind's own
/// config file in the node's folder: a guest on another cluster node is not found here).
pub(super) fn guest<'a>(
    st: &'a State,
    shared: &Shared,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<&'a Guest> {
    st.guests
        .get(&vmid)
        .filter(|g| g.kind == kind && g.node_or(&shared.primary) == shared.node)
        .ok_or_else(|| no_config(shared, kind, vmid))
}

/// PVE's error for a guest whose `lock` property is set.
pub(super) fn locked_error(kind: GuestKind, lock: &str) -> String {
    format!("{} is locked ({lock})", type_str(kind))
}

/// Validates with the path's `node` and `vmid` included, as PVE's schema has them.
pub(super) fn checked(
    shared: &Shared,
    req: &ApiRequest,
    vmid: Option<u32>,
    spec: &[ParamSpec],
    config_of: Option<GuestKind>,
) -> ApiResult<BTreeMap<String, Value>> {
    let mut p = req.params.clone();
    p.insert("node", shared.node.clone());
    if let Some(v) = vmid {
        p.insert("vmid", v.to_string());
    }
    let mut out = validate(&p, spec, config_of)?;
    out.remove("node");
    // qemu-server and pve-container: `skiplock` is root@pam's alone (an API token of
    // root@pam is `root@pam!NAME`, another user to this check).
    if out.contains_key("skiplock") && req.user != ROOT {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    Ok(out)
}

/// A fault aimed at this operation, fired.
pub(super) fn fault(
    shared: &Shared,
    op: Op,
    vmids: &[u32],
    name: Option<&str>,
) -> Option<FaultKind> {
    shared
        .lock()
        .faults
        .guest_fault(&GuestCtx { op, vmids, name })
}

/// PVE's wording for an operation that failed, for injected failures without a message.
pub(super) fn default_failure(kind: GuestKind, op: Op, vmid: u32) -> String {
    match (op, kind) {
        (Op::Create, GuestKind::Qemu) => format!("unable to create VM {vmid} - lvcreate 'pve/vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space (1024 extents): 8192 required."),
        (Op::Create, GuestKind::Lxc) => format!("unable to create CT {vmid} - lvcreate 'pve/vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space (1024 extents): 2048 required."),
        (Op::Clone, _) => format!("clone failed: lvcreate 'pve/vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space (1024 extents): 8192 required."),
        (Op::Config, _) => format!("failed to update VM {vmid}: got timeout"),
        (Op::Resize, _) => format!("command '/sbin/lvextend -L 13631488k pve/vm-{vmid}-disk-0' failed: exit code 5"),
        (Op::Start, GuestKind::Qemu) => "start failed: QEMU exited with code 1".to_string(),
        (Op::Start, GuestKind::Lxc) => format!("startup for container '{vmid}' failed"),
        (Op::Stop, GuestKind::Qemu) => "VM quit/powerdown failed".to_string(),
        (Op::Shutdown, GuestKind::Qemu) => "VM quit/powerdown failed - got timeout".to_string(),
        (Op::Stop | Op::Shutdown, GuestKind::Lxc) => "container did not stop".to_string(),
        (Op::Delete, _) => "failed to remove config file: Permission denied".to_string(),
        (Op::Snapshot, _) => format!("lvcreate snapshot 'pve/snap_vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space"),
        (Op::Rollback, _) => format!("lvconvert 'pve/snap_vm-{vmid}-disk-0' error: Failed to merge snapshot"),
        (Op::DelSnapshot, _) => format!("lvremove 'pve/snap_vm-{vmid}-disk-0' error: Logical volume in use"),
        (Op::Backup, _) => "job errors".to_string(),
        (Op::Restore, _) => format!("unable to restore {} {vmid} - command 'vma extract' failed: exit code 133", type_str(kind)),
    }
}

/// Applies an injected fault to a job: a failure message, or a lock timeout in the worker.
pub(super) fn arm(job: &mut Job, f: Option<FaultKind>, kind: GuestKind, op: Op, vmid: u32) {
    match f {
        Some(FaultKind::TaskFailure { message }) => {
            job.fail = Some(message.unwrap_or_else(|| default_failure(kind, op, vmid)));
        }
        Some(FaultKind::LockTimeout) => job.lock_fault = Some(vmid),
        _ => {}
    }
}

/// A new guest for `vmid`, with an address of its own and no folder left from an earlier
/// guest of that vmid.
pub(super) fn new_guest(
    shared: &Shared,
    st: &State,
    kind: GuestKind,
    vmid: u32,
    config: BTreeMap<String, Value>,
) -> ApiResult<Guest> {
    let net = shared.ssh.net();
    let ip = crate::net::allocate(net, vmid, &st.ips()).ok_or_else(|| {
        ApiError::internal(format!(
            "pvesim: no free loopback address left in {}.{}.0.0/16",
            net[0], net[1]
        ))
    })?;
    // A folder left by an earlier guest with this vmid (and its host key) is not this one's.
    shared.ssh.prepare_new(vmid);
    let mut g = Guest::new(vmid, kind, config, ip);
    g.node = shared.guest_node(&shared.node);
    Ok(g)
}

/// PVE's refusal to make a guest whose vmid is taken, if it is.
pub(super) fn exists_error(st: &State, kind: GuestKind, vmid: u32, node: &str) -> Option<ApiError> {
    let existing = st.guests.get(&vmid)?;
    Some(ApiError::internal(match kind {
        GuestKind::Qemu => format!("unable to create VM {vmid}: config file already exists"),
        GuestKind::Lxc => format!(
            "{} {vmid} already exists on node '{node}'",
            type_str(existing.kind)
        ),
    }))
}

/// Takes a guest's config lock for a synchronous change (PVE waits up to 10 s, then
/// answers `can't lock file ... - got timeout`).
pub(super) async fn sync_lock(
    shared: &Arc<Shared>,
    kind: GuestKind,
    vmid: u32,
    holder: &str,
    forced: bool,
) -> ApiResult<()> {
    if forced {
        let d = shared.scaled(shared.timings.lock_wait);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        return Err(ApiError::internal(lock_message(kind, vmid)));
    }
    if tasks::acquire(shared, vmid, holder).await {
        Ok(())
    } else {
        Err(ApiError::internal(lock_message(kind, vmid)))
    }
}

/// Releases a config lock taken with [`sync_lock`].
pub(super) fn unlock(st: &mut State, vmid: u32) {
    if let Some(g) = st.guests.get_mut(&vmid) {
        g.busy = None;
    }
}

/// A size as PVE's task logs show it (`3.0 GiB`).
pub(super) fn human(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    format!("{gib:.1} GiB")
}
