//! PVE-style parameter checks for the endpoints pvesim answers: types, ranges, enumerations
//! and the few formats the driver relies on, with PVE's wording
//! (`type check ('integer') failed - got 'banana'`, `property is missing and it is not
//! optional`, ...). All errors of a request are collected into one 400, as PVE does.
//! Property strings with rich formats (`net0`, `scsi0`, ...) get a light check only.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::model::{indexed, GuestKind};
use crate::params::{parse_bool, Params};

#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Int(Option<i64>, Option<i64>),
    Num(Option<f64>, Option<f64>),
    Bool,
    Str,
    Enum(&'static [&'static str]),
    /// A string with a named format, checked by [`check_format`].
    Fmt(&'static str),
    /// `+?\d+(\.\d+)?[KMGT]?` (resize).
    DiskSize,
}

const VMID: Ty = Ty::Int(Some(100), Some(999_999_999));

fn int_min(min: i64) -> Ty {
    Ty::Int(Some(min), None)
}

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

fn type_err(kind: &str, v: &str) -> String {
    format!("type check ('{kind}') failed - got '{v}'")
}

fn is_int(v: &str) -> bool {
    let d = v.strip_prefix(['+', '-']).unwrap_or(v);
    !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
}

/// Checks one value; `Ok` gives the value as `GET config` shows it.
pub(crate) fn check(ty: Ty, key: &str, v: &str) -> Result<Value, String> {
    match ty {
        Ty::Int(min, max) => {
            if !is_int(v) {
                return Err(type_err("integer", v));
            }
            let n: i64 = v
                .trim_start_matches('+')
                .parse()
                .map_err(|_| type_err("integer", v))?;
            if let Some(m) = max.filter(|m| n > *m) {
                return Err(format!("value must have a maximum value of {m}"));
            }
            if let Some(m) = min.filter(|m| n < *m) {
                return Err(format!("value must have a minimum value of {m}"));
            }
            Ok(Value::from(n))
        }
        Ty::Num(min, max) => {
            let f: f64 = v
                .parse()
                .ok()
                .filter(|f: &f64| f.is_finite() && v.trim() == v)
                .ok_or_else(|| type_err("number", v))?;
            if let Some(m) = max.filter(|m| f > *m) {
                return Err(format!("value must have a maximum value of {m}"));
            }
            if let Some(m) = min.filter(|m| f < *m) {
                return Err(format!("value must have a minimum value of {m}"));
            }
            Ok(serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null))
        }
        Ty::Bool => parse_bool(v)
            .map(|b| Value::from(u8::from(b)))
            .ok_or_else(|| type_err("boolean", v)),
        Ty::Str => Ok(Value::from(v)),
        Ty::Enum(options) => {
            if options.contains(&v) {
                Ok(Value::from(v))
            } else {
                Err(format!(
                    "value '{v}' does not have a value in the enumeration '{}'",
                    options.join(", ")
                ))
            }
        }
        Ty::DiskSize => {
            let d = v.strip_prefix('+').unwrap_or(v);
            let d = d.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(d);
            let (int, frac) = d.split_once('.').unwrap_or((d, "0"));
            let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
            if digits(int) && digits(frac) {
                Ok(Value::from(v))
            } else {
                Err("value does not match the regex pattern".to_string())
            }
        }
        Ty::Fmt(f) => check_format(f, key, v)
            .map(|()| Value::from(v))
            .map_err(|why| format!("invalid format - {why}")),
    }
}

fn is_dns_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_ipv4_cidr(v: &str) -> bool {
    let Some((ip, len)) = v.split_once('/') else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

fn kv_pairs(v: &str) -> Vec<(&str, Option<&str>)> {
    v.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        })
        .collect()
}

const NIC_MODELS: &[&str] = &["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551"];

fn check_format(f: &str, key: &str, v: &str) -> Result<(), String> {
    match f {
        "dns-name" => is_dns_name(v)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid DNS name".to_string()),
        "urlencoded" => v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-%_.!~*'()".contains(c))
            .then_some(())
            .ok_or_else(|| format!("invalid urlencoded string: {v}")),
        "qemu-memory" => {
            let n = v.strip_prefix("current=").unwrap_or(v);
            match n.parse::<u64>() {
                Ok(m) if m >= 16 => Ok(()),
                Ok(_) => Err(format!(
                    "format error\n{key}.current: value must have a minimum value of 16"
                )),
                Err(_) => Err(format!(
                    "format error\n{key}.current: type check ('integer') failed - got '{n}'"
                )),
            }
        }
        "qemu-agent" => {
            for (k, val) in kv_pairs(v) {
                let (k, val) = match val {
                    None => ("enabled", k),
                    Some(val) => (k, val),
                };
                match k {
                    "enabled" | "fstrim_cloned_disks" | "freeze-fs-on-backup" | "freeze-fs" => {
                        if parse_bool(val).is_none() {
                            return Err(format!("format error\n{key}.{k}: type check ('boolean') failed - got '{val}'"));
                        }
                    }
                    "type" => {
                        if !["virtio", "isa"].contains(&val) {
                            return Err(format!("format error\n{key}.type: value '{val}' does not have a value in the enumeration 'virtio, isa'"));
                        }
                    }
                    other => return Err(format!("format error\n{key}.{other}: property is not defined in schema and the schema does not allow additional properties")),
                }
            }
            Ok(())
        }
        "qemu-net" => {
            let pairs = kv_pairs(v);
            let has_model = pairs.iter().any(|(k, val)| {
                NIC_MODELS.contains(k)
                    || (*k == "model" && val.is_some_and(|m| NIC_MODELS.contains(&m)))
            });
            if !has_model {
                return Err(format!(
                    "format error\n{key}.model: property is missing and it is not optional"
                ));
            }
            Ok(())
        }
        "lxc-net" => {
            let pairs = kv_pairs(v);
            if !pairs.iter().any(|(k, val)| *k == "name" && val.is_some()) {
                return Err(format!(
                    "format error\n{key}.name: property is missing and it is not optional"
                ));
            }
            for (k, val) in pairs {
                if k == "ip" {
                    let val = val.unwrap_or("");
                    if !(val == "dhcp" || val == "manual" || is_ipv4_cidr(val)) {
                        return Err(format!("format error\n{key}.ip: invalid format - invalid IPv4 network configuration '{val}'"));
                    }
                }
            }
            Ok(())
        }
        "ipconfig" => {
            for (k, val) in kv_pairs(v) {
                let val = val.unwrap_or("");
                match k {
                    "ip" => {
                        if !(val == "dhcp" || is_ipv4_cidr(val)) {
                            return Err(format!("format error\n{key}.ip: invalid format - invalid IPv4 network configuration '{val}'"));
                        }
                    }
                    "gw" => {
                        if val.parse::<std::net::Ipv4Addr>().is_err() {
                            return Err(format!("format error\n{key}.gw: invalid format - value does not look like a valid IPv4 address: {val}"));
                        }
                    }
                    "ip6" | "gw6" => {}
                    other => return Err(format!("format error\n{key}.{other}: property is not defined in schema and the schema does not allow additional properties")),
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A parameter of an endpoint: name, type, required.
pub(crate) type ParamSpec = (&'static str, Ty, bool);

pub(crate) const NOT_IN_SCHEMA: &str =
    "property is not defined in schema and the schema does not allow additional properties";
pub(crate) const MISSING: &str = "property is missing and it is not optional";

/// Checks the request's parameters against `spec` (plus guest config properties of `kind`
/// when given). Unknown parameters are errors, as in PVE. Returns the checked values.
pub(crate) fn validate(
    params: &Params,
    spec: &[ParamSpec],
    config_of: Option<GuestKind>,
) -> ApiResult<BTreeMap<String, Value>> {
    let mut errors = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (name, value) in params.iter() {
        let ty = spec
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, t, _)| *t)
            .or_else(|| config_of.and_then(|k| prop(k, name)));
        match ty {
            None => {
                errors.insert(name.to_string(), NOT_IN_SCHEMA.to_string());
            }
            Some(ty) => match check(ty, name, value) {
                Ok(v) => {
                    out.insert(name.to_string(), v);
                }
                Err(e) => {
                    errors.insert(name.to_string(), e);
                }
            },
        }
    }
    for (name, _, required) in spec {
        if *required && params.get(name).is_none() {
            errors.insert(name.to_string(), MISSING.to_string());
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::params(errors))
    }
}

pub(crate) mod specs {
    //! Parameters of each endpoint (path parameters included, as PVE checks them too).
    use super::{ParamSpec, Ty, VMID};

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pve_wording() {
        let e = check(qemu_prop("cores").unwrap(), "cores", "banana").unwrap_err();
        assert_eq!(e, "type check ('integer') failed - got 'banana'");
        let e = check(qemu_prop("cores").unwrap(), "cores", "0").unwrap_err();
        assert_eq!(e, "value must have a minimum value of 1");
        assert_eq!(
            check(qemu_prop("onboot").unwrap(), "onboot", "yes").unwrap(),
            Value::from(1)
        );
        assert!(check(qemu_prop("sshkeys").unwrap(), "sshkeys", "ssh-ed25519 AAAA").is_err());
        assert!(check(
            qemu_prop("sshkeys").unwrap(),
            "sshkeys",
            "ssh-ed25519%20AAAA"
        )
        .is_ok());
        assert!(qemu_prop("net32").is_none());
        assert!(qemu_prop("net31").is_some());
        assert!(qemu_prop("banana").is_none());
        assert!(check(Ty::DiskSize, "size", "+10G").is_ok());
        assert!(check(Ty::DiskSize, "size", "10X").is_err());
        assert!(check(qemu_prop("ipconfig0").unwrap(), "ipconfig0", "ip=dhcp").is_ok());
        assert!(check(
            qemu_prop("ipconfig0").unwrap(),
            "ipconfig0",
            "ip=10.0.0.5/24,gw=10.0.0.1"
        )
        .is_ok());
        assert!(check(qemu_prop("ipconfig0").unwrap(), "ipconfig0", "ip=banana").is_err());
    }
}
