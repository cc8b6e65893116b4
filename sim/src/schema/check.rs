//! Checking one value against its type, with PVE's wording: integers and numbers with
//! ranges, booleans, enumerations, and the named formats (`dns-name`, `qemu-net`,
//! `ipconfig`, ...) that get a light check.

use serde_json::Value;

use crate::params::parse_bool;

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
    /// pve-common's `pve-vmid` option: an integer with the `pve-vmid` format, which
    /// `check_prop` checks before the range (so `5` is a bad VM ID, not too small).
    Vmid,
}

pub(super) const VMID: Ty = Ty::Vmid;

pub(super) fn int_min(min: i64) -> Ty {
    Ty::Int(Some(min), None)
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
        Ty::Vmid => {
            if !is_int(v) {
                return Err(type_err("integer", v));
            }
            let d = v.as_bytes();
            if !(3..=9).contains(&d.len()) || d[0] == b'0' || !d.iter().all(u8::is_ascii_digit) {
                return Err("invalid format - value does not look like a valid VM ID\n".into());
            }
            check(Ty::Int(Some(100), Some(999_999_999)), key, v)
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
        // pve-common `PVE/JSONSchema.pm` `check_prop`: `add_error(..., "invalid format - $@")`,
        // and `$@` is always a newline-terminated `die` text (or a stringified `format error`
        // exception, whose lines all end in one): these values keep that newline.
        Ty::Fmt(f) => check_format(f, key, v)
            .map(|()| Value::from(v))
            .map_err(|why| {
                let mut m = format!("invalid format - {why}");
                if !m.ends_with('\n') {
                    m.push('\n');
                }
                m
            }),
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

/// qemu-server `PVE/QemuServer/Network.pm` `$nic_model_list`, in its order (the enumeration
/// error lists them so).
const NIC_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

fn check_format(f: &str, key: &str, v: &str) -> Result<(), String> {
    match f {
        // pve-common's `pve-configid` (also `pve-snapshot-name`, with maxLength 40).
        "pve-configid" => {
            let mut c = v.chars();
            let ok = c.next().is_some_and(|f| f.is_ascii_alphabetic())
                && v.len() > 1
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '-');
            if v.len() > 40 {
                return Err("value may only be 40 characters long".to_string());
            }
            ok.then_some(())
                .ok_or_else(|| format!("invalid configuration ID '{v}'"))
        }
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
            // `current` is an integer (`^[+-]?\d+$`, so `-1` is one) with a minimum of 16.
            let parsed = if is_int(n) {
                n.trim_start_matches('+').parse::<i64>().ok()
            } else {
                None
            };
            match parsed {
                Some(m) if m >= 16 => Ok(()),
                Some(_) => Err(format!(
                    "format error\n{key}.current: value must have a minimum value of 16"
                )),
                None => Err(format!(
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
            // `model` is the format's `default_key` (a bare word is the model) and each model
            // name is a key alias (`virtio=MAC`); pve-common `parse_property_string`, then the
            // enumeration check of `check_prop`.
            let model = kv_pairs(v).into_iter().find_map(|(k, val)| match val {
                None => Some(k),
                Some(m) if k == "model" => Some(m),
                Some(_) if NIC_MODELS.contains(&k) => Some(k),
                Some(_) => None,
            });
            match model {
                None => Err(format!(
                    "format error\n{key}.model: property is missing and it is not optional"
                )),
                Some(m) if !NIC_MODELS.contains(&m) => Err(format!(
                    "format error\n{key}.model: value '{m}' does not have a value in the enumeration '{}'",
                    NIC_MODELS.join(", ")
                )),
                Some(_) => Ok(()),
            }
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
