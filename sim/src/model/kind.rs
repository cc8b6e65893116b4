//! QEMU VM or LXC container: what decides a guest's config keys, paths and PVE's wording.

use serde::{Deserialize, Serialize};

/// QEMU VM or LXC container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Qemu,
    Lxc,
}

/// PVE's lock-timeout wording for a guest's config lock file.
pub(crate) fn lock_message(kind: GuestKind, vmid: u32) -> String {
    match kind {
        GuestKind::Qemu => {
            format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
        }
        GuestKind::Lxc => {
            format!("can't lock file '/run/lock/lxc/pve-config-{vmid}.lock' - got timeout")
        }
    }
}
