//! The guest config properties PVE's schema knows, with their types: QEMU's and LXC's
//! (indexed ones such as `net0`..`net31` with their ranges).

use super::check::{int_min, Ty};
use crate::model::{indexed, GuestKind};

/// The type of a QEMU config property, `None` if PVE's schema has no such property.
pub(crate) fn qemu_prop(key: &str) -> Option<Ty> {
    Some(match key {
        "acpi" | "autostart" | "kvm" | "localtime" | "numa" | "onboot" | "protection"
        | "reboot" | "tablet" | "template" | "ciupgrade" | "freeze" | "allow-ksm" | "tdf"
        | "keephugepages" => Ty::Bool,
        "agent" => Ty::Fmt("qemu-agent"),
        "arch" => Ty::Enum(&["x86_64", "aarch64"]),
        "balloon" => int_min(0),
        "bios" => Ty::Enum(&["seabios", "ovmf"]),
        "cores" | "sockets" | "vcpus" | "smp" => int_min(1),
        "cpulimit" => Ty::Num(Some(0.0), Some(128.0)),
        "cpuunits" => Ty::Int(Some(1), Some(262_144)),
        "citype" => Ty::Enum(&["configdrive2", "nocloud", "opennebula"]),
        "memory" => Ty::Fmt("qemu-memory"),
        "name" => Ty::Fmt("dns-name"),
        "ostype" => Ty::Enum(&[
            "other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11",
            "l24", "l26", "solaris",
        ]),
        "scsihw" => Ty::Enum(&[
            "lsi",
            "lsi53c810",
            "virtio-scsi-pci",
            "virtio-scsi-single",
            "megasas",
            "pvscsi",
        ]),
        "shares" => Ty::Int(Some(0), Some(50_000)),
        "sshkeys" => Ty::Fmt("urlencoded"),
        "lock" => Ty::Enum(&[
            "backup",
            "clone",
            "create",
            "migrate",
            "rollback",
            "snapshot",
            "snapshot-delete",
            "suspending",
            "suspended",
        ]),
        "hugepages" => Ty::Enum(&["any", "2", "1024"]),
        "migrate_downtime" => Ty::Num(Some(0.0), None),
        "migrate_speed" => int_min(0),
        "boot" | "bootdisk" | "cdrom" | "cicustom" | "cipassword" | "ciuser" | "cpu"
        | "description" | "hookscript" | "hotplug" | "machine" | "nameserver" | "searchdomain"
        | "startdate" | "startup" | "tags" | "vga" | "vmgenid" | "watchdog" | "rng0"
        | "affinity" | "args" | "keyboard" | "vmstatestorage" | "audio0" | "ivshmem"
        | "spice_enhancements" | "amd-sev" | "intel-tdx" => Ty::Str,
        _ => {
            let p = indexed(
                key,
                &[
                    ("net", 31),
                    ("ipconfig", 31),
                    ("scsi", 30),
                    ("virtio", 15),
                    ("sata", 5),
                    ("ide", 3),
                    ("efidisk", 0),
                    ("tpmstate", 0),
                    ("serial", 3),
                    ("parallel", 2),
                    ("usb", 4),
                    ("hostpci", 15),
                    ("numa", 7),
                    ("unused", 255),
                    ("virtiofs", 9),
                ],
            )?;
            match p {
                "net" => Ty::Fmt("qemu-net"),
                "ipconfig" => Ty::Fmt("ipconfig"),
                _ => Ty::Str,
            }
        }
    })
}

/// The type of an LXC config property, `None` if PVE's schema has no such property.
pub(crate) fn lxc_prop(key: &str) -> Option<Ty> {
    Some(match key {
        "console" | "debug" | "onboot" | "protection" | "template" | "unprivileged" => Ty::Bool,
        "arch" => Ty::Enum(&["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"]),
        "cmode" => Ty::Enum(&["shell", "console", "tty"]),
        "cores" => Ty::Int(Some(1), Some(8192)),
        "cpulimit" => Ty::Num(Some(0.0), Some(8192.0)),
        "cpuunits" => Ty::Int(Some(0), Some(500_000)),
        "memory" => int_min(16),
        "swap" => int_min(0),
        "tty" => Ty::Int(Some(0), Some(6)),
        "hostname" => Ty::Fmt("dns-name"),
        "ostype" => Ty::Enum(&[
            "debian",
            "devuan",
            "ubuntu",
            "centos",
            "fedora",
            "opensuse",
            "archlinux",
            "alpine",
            "gentoo",
            "nixos",
            "unmanaged",
        ]),
        "lock" => Ty::Enum(&[
            "backup",
            "create",
            "destroyed",
            "disk",
            "fstrim",
            "migrate",
            "mounted",
            "rollback",
            "snapshot",
            "snapshot-delete",
        ]),
        "description" | "features" | "hookscript" | "nameserver" | "searchdomain" | "startup"
        | "tags" | "timezone" | "rootfs" | "entrypoint" | "env" => Ty::Str,
        _ => {
            let p = indexed(
                key,
                &[("net", 31), ("mp", 255), ("unused", 255), ("dev", 255)],
            )?;
            match p {
                "net" => Ty::Fmt("lxc-net"),
                _ => Ty::Str,
            }
        }
    })
}

pub(crate) fn prop(kind: GuestKind, key: &str) -> Option<Ty> {
    match kind {
        GuestKind::Qemu => qemu_prop(key),
        GuestKind::Lxc => lxc_prop(key),
    }
}
