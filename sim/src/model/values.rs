//! Values as PVE's config strings hold them: booleans and integers given as text, sizes
//! (`32G`), the `size=` of a disk, which keys are disks, and the config `digest`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::kind::GuestKind;

pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Bytes of a size like `32G`, `512M`, `10.5G`, `1T`, `4096` (bytes... PVE's default unit
/// in `size=` is bytes only for raw numbers; we follow that).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let f: f64 = num.parse().ok()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    Some((f * mult as f64) as u64)
}

/// The `size=` of a disk property string, in bytes.
pub(crate) fn disk_size(prop: &str) -> Option<u64> {
    prop.split(',')
        .find_map(|p| p.strip_prefix("size="))
        .and_then(parse_size)
}

/// A size in PVE's own notation: the largest unit that divides evenly.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, m) in [
        ('T', 1u64 << 40),
        ('G', 1 << 30),
        ('M', 1 << 20),
        ('K', 1 << 10),
    ] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

/// Indexed keys: `net0`..`net31` etc. Returns the prefix, if the key is one with its index in range.
pub(crate) fn indexed(key: &str, prefixes: &[(&'static str, u32)]) -> Option<&'static str> {
    prefixes.iter().find_map(|(p, max)| {
        let rest = key.strip_prefix(p)?;
        let n: u32 = rest.parse().ok()?;
        (n <= *max && (rest == "0" || !rest.starts_with('0'))).then_some(*p)
    })
}

const QEMU_DISKS: &[(&str, u32)] = &[
    ("scsi", 30),
    ("virtio", 15),
    ("sata", 5),
    ("ide", 3),
    ("efidisk", 0),
    ("tpmstate", 0),
];

/// Whether `key` is one of the kind's disk keys (`scsi0`, `rootfs`, `mp3`, ...).
pub(crate) fn is_disk_key(kind: GuestKind, key: &str) -> bool {
    match kind {
        GuestKind::Qemu => indexed(key, QEMU_DISKS).is_some(),
        GuestKind::Lxc => key == "rootfs" || indexed(key, &[("mp", 255)]).is_some(),
    }
}

/// SHA-1 of the config, as PVE's `digest`.
pub(crate) fn digest(config: &BTreeMap<String, Value>) -> String {
    let mut text = String::new();
    for (k, v) in config {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("{k}: {v}\n"));
    }
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
