//! Identifiers the simulator makes up: random bytes, UUIDs and hex (token secrets, tickets,
//! host keys, instance tags), PVE's task UPIDs, the MACs of guests' NICs and free vmids.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    // SystemRandom only fails if the OS has no entropy source; fall back to the clock then,
    // which is fine for a simulator's tokens.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    b
}

/// A random UUID (v4), the form PVE gives token secrets.
pub(crate) fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// `n` random upper-case hex digits (at most 64).
pub(crate) fn random_hex(n: usize) -> String {
    random_bytes::<32>()
        .iter()
        .map(|x| format!("{x:02X}"))
        .collect::<String>()
        .chars()
        .take(n)
        .collect()
}

/// `UPID:{node}:{pid}:{pstart}:{starttime}:{type}:{id}:{user}:` with PVE's hex widths.
pub(crate) fn format_upid(
    node: &str,
    pid: u32,
    pstart: u32,
    starttime: u64,
    ttype: &str,
    id: &str,
    user: &str,
) -> String {
    format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{ttype}:{id}:{user}:")
}

/// Checks a UPID's syntax as PVE does (`unable to parse worker upid`).
pub(crate) fn parse_upid(upid: &str) -> Option<(String, u32)> {
    let parts: Vec<&str> = upid.split(':').collect();
    if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
        return None;
    }
    let hex = |s: &str| s.len() >= 8 && s.chars().all(|c| c.is_ascii_hexdigit());
    if !(hex(parts[2]) && hex(parts[3]) && hex(parts[4])) || parts[5].is_empty() {
        return None;
    }
    let pid = u32::from_str_radix(parts[2], 16).ok()?;
    Some((parts[1].to_string(), pid))
}

/// A deterministic MAC for a guest's NIC, in Proxmox's `BC:24:11` range.
pub(crate) fn mac_for(vmid: u32, index: u32) -> String {
    let v = vmid.wrapping_mul(32).wrapping_add(index);
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff
    )
}

/// The lowest vmid from 100 that is not `taken`, as `/cluster/nextid` answers.
pub(crate) fn first_free_vmid(taken: impl Fn(u32) -> bool) -> Option<u32> {
    (100u32..1_000_000).find(|id| !taken(*id))
}
