//! Parameters of each endpoint (path parameters included, as PVE checks them too).

use super::check::{Ty, VMID};
use super::validate::ParamSpec;

pub const NODE: ParamSpec = ("node", Ty::Str, true);
pub const VMID_P: ParamSpec = ("vmid", VMID, true);

pub const NEXTID: &[ParamSpec] = &[("vmid", VMID, false)];
pub const CLONE_QEMU: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("newid", VMID, true),
    ("name", Ty::Fmt("dns-name"), false),
    ("description", Ty::Str, false),
    ("full", Ty::Bool, false),
    ("target", Ty::Str, false),
    ("storage", Ty::Str, false),
    ("format", Ty::Enum(&["raw", "qcow2", "vmdk"]), false),
    ("pool", Ty::Str, false),
    ("snapname", Ty::Str, false),
    ("bwlimit", Ty::Int(Some(0), None), false),
];
pub const CLONE_LXC: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("newid", VMID, true),
    ("hostname", Ty::Fmt("dns-name"), false),
    ("description", Ty::Str, false),
    ("full", Ty::Bool, false),
    ("target", Ty::Str, false),
    ("storage", Ty::Str, false),
    ("pool", Ty::Str, false),
    ("snapname", Ty::Str, false),
    ("bwlimit", Ty::Num(Some(0.0), None), false),
];
pub const CREATE_QEMU: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("pool", Ty::Str, false),
    ("start", Ty::Bool, false),
    ("storage", Ty::Str, false),
    ("unique", Ty::Bool, false),
    ("force", Ty::Bool, false),
    ("archive", Ty::Str, false),
    ("bwlimit", Ty::Int(Some(0), None), false),
    ("live-restore", Ty::Bool, false),
    ("ha-managed", Ty::Bool, false),
];
pub const CREATE_LXC: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("ostemplate", Ty::Str, true),
    ("pool", Ty::Str, false),
    ("start", Ty::Bool, false),
    ("storage", Ty::Str, false),
    ("unique", Ty::Bool, false),
    ("force", Ty::Bool, false),
    ("restore", Ty::Bool, false),
    ("password", Ty::Str, false),
    ("ssh-public-keys", Ty::Str, false),
    ("ignore-unpack-errors", Ty::Bool, false),
    ("bwlimit", Ty::Num(Some(0.0), None), false),
    ("ha-managed", Ty::Bool, false),
];
pub const CONFIG_SET: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("delete", Ty::Str, false),
    ("revert", Ty::Str, false),
    ("digest", Ty::Str, false),
    ("skiplock", Ty::Bool, false),
    ("force", Ty::Bool, false),
    ("background_delay", Ty::Int(Some(1), Some(30)), false),
];
pub const CONFIG_GET: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("current", Ty::Bool, false),
    ("snapshot", Ty::Str, false),
];
pub const RESIZE: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("disk", Ty::Str, true),
    ("size", Ty::DiskSize, true),
    ("digest", Ty::Str, false),
    ("skiplock", Ty::Bool, false),
];
pub const GUEST: &[ParamSpec] = &[NODE, VMID_P];
pub const START: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("skiplock", Ty::Bool, false),
    ("timeout", Ty::Int(Some(0), None), false),
    ("machine", Ty::Str, false),
    ("force-cpu", Ty::Str, false),
    ("debug", Ty::Bool, false),
];
pub const STOP: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("skiplock", Ty::Bool, false),
    ("timeout", Ty::Int(Some(0), None), false),
    ("keepActive", Ty::Bool, false),
    ("overrule-shutdown", Ty::Bool, false),
];
pub const SHUTDOWN: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("skiplock", Ty::Bool, false),
    ("timeout", Ty::Int(Some(0), None), false),
    ("forceStop", Ty::Bool, false),
    ("keepActive", Ty::Bool, false),
];
pub const DELETE: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("purge", Ty::Bool, false),
    ("destroy-unreferenced-disks", Ty::Bool, false),
    ("skiplock", Ty::Bool, false),
    ("force", Ty::Bool, false),
];
/// qemu-server `migrate_vm` (the options pvesim acts on or has no use for).
pub const MIGRATE_QEMU: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("target", Ty::Str, true),
    ("online", Ty::Bool, false),
    ("force", Ty::Bool, false),
    ("with-local-disks", Ty::Bool, false),
    ("targetstorage", Ty::Str, false),
    ("bwlimit", Ty::Int(Some(0), None), false),
];
/// pve-container `migrate_vm`.
pub const MIGRATE_LXC: &[ParamSpec] = &[
    NODE,
    VMID_P,
    ("target", Ty::Str, true),
    ("online", Ty::Bool, false),
    ("restart", Ty::Bool, false),
    ("timeout", Ty::Int(None, None), false),
    ("target-storage", Ty::Str, false),
    ("bwlimit", Ty::Num(Some(0.0), None), false),
];
pub const TASK_LOG: &[ParamSpec] = &[
    NODE,
    ("upid", Ty::Str, true),
    ("start", Ty::Int(Some(0), None), false),
    ("limit", Ty::Int(Some(0), None), false),
    ("download", Ty::Bool, false),
];
pub const TOKEN_ADD: &[ParamSpec] = &[
    ("userid", Ty::Str, true),
    ("tokenid", Ty::Str, true),
    ("comment", Ty::Str, false),
    ("expire", Ty::Int(Some(0), None), false),
    ("privsep", Ty::Bool, false),
];
