//! The template guests a fresh simulator starts with: the images the driver's manifests name
//! (qemu 9000..9003, lxc 9100..9101), each with a cloud-init drive and the agent on. (The
//! container templates `local` holds are files: `Shared::new` leaves them there.)

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::world::State;
use crate::ids::{mac_for, random_uuid};
use crate::model::{Guest, GuestKind};

/// The template guests a fresh simulator starts with: the images the driver's manifests name.
pub(crate) fn seed(st: &mut State, net: [u8; 2]) {
    let qemu = [
        (9000, "debian-12", "3G"),
        (9001, "debian-13", "3G"),
        (9002, "debian-13-pve", "8G"),
        (9003, "pve-9", "16G"),
    ];
    for (vmid, name, size) in qemu {
        let config: BTreeMap<String, Value> = [
            ("name", json!(name)),
            ("template", json!(1)),
            ("cores", json!(2)),
            ("sockets", json!(1)),
            ("memory", json!("2048")),
            ("cpu", json!("host")),
            ("agent", json!("1")),
            ("ostype", json!("l26")),
            ("scsihw", json!("virtio-scsi-single")),
            (
                "scsi0",
                json!(format!(
                    "local-lvm:base-{vmid}-disk-0,discard=on,iothread=1,size={size}"
                )),
            ),
            (
                "ide2",
                json!(format!("local-lvm:vm-{vmid}-cloudinit,media=cdrom")),
            ),
            (
                "net0",
                json!(format!("virtio={},bridge=vmbr0", mac_for(vmid, 0))),
            ),
            ("serial0", json!("socket")),
            ("vga", json!("serial0")),
            ("boot", json!("order=scsi0")),
            (
                "description",
                json!(format!("pvesim template for image {name}")),
            ),
            ("smbios1", json!(format!("uuid={}", random_uuid()))),
            ("vmgenid", json!(random_uuid())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        insert_seed(st, net, vmid, GuestKind::Qemu, config);
    }
    for (vmid, name) in [(9100, "debian-12"), (9101, "debian-13")] {
        let config: BTreeMap<String, Value> = [
            ("hostname", json!(name)),
            ("template", json!(1)),
            ("ostype", json!("debian")),
            ("arch", json!("amd64")),
            ("cores", json!(1)),
            ("memory", json!(512)),
            ("swap", json!(512)),
            (
                "rootfs",
                json!(format!("local-lvm:base-{vmid}-disk-0,size=4G")),
            ),
            (
                "net0",
                json!(format!(
                    "name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth",
                    mac_for(vmid, 0)
                )),
            ),
            ("unprivileged", json!(1)),
            ("features", json!("nesting=1")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        insert_seed(st, net, vmid, GuestKind::Lxc, config);
    }
}

fn insert_seed(
    st: &mut State,
    net: [u8; 2],
    vmid: u32,
    kind: GuestKind,
    config: BTreeMap<String, Value>,
) {
    if let Some(ip) = crate::net::allocate(net, vmid, &st.ips()) {
        st.guests.insert(vmid, Guest::new(vmid, kind, config, ip));
    }
}

/// Moves the seeded templates' disks to `storage` (a cluster's shared one, so every node can
/// clone them).
pub(crate) fn templates_on(st: &mut State, storage: &str) {
    let vmids: Vec<u32> = st.guests.keys().copied().collect();
    for vmid in vmids {
        if let Some(g) = st.guests.get_mut(&vmid) {
            for v in g.config.values_mut() {
                if let Some(text) = v.as_str().and_then(|t| t.strip_prefix("local-lvm:")) {
                    *v = Value::String(format!("{storage}:{text}"));
                }
            }
        }
    }
}
