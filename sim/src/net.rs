//! Per-guest loopback addresses. Each guest gets one address in `127.77.0.0/16`, derived from
//! its vmid so the same vmid usually gets the same address, and never outside `127.0.0.0/8`:
//! the guest's agent reports it, and (later) its SSH server listens on it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Usable host numbers per `127.77.x.0/24` (1..=254: no `.0`, no `.255`, to look ordinary).
const PER_BLOCK: u32 = 254;
const SLOTS: u32 = 256 * PER_BLOCK;

fn slot_addr(slot: u32) -> Ipv4Addr {
    let slot = slot % SLOTS;
    // Both parts fit a byte: slot / 254 < 256 and slot % 254 + 1 <= 254.
    let x = (slot / PER_BLOCK) as u8;
    let y = (slot % PER_BLOCK + 1) as u8;
    Ipv4Addr::new(127, 77, x, y)
}

/// The address for `vmid`: its own slot when free, else the next free one.
/// `None` only when all 65,024 addresses are taken.
pub(crate) fn allocate(vmid: u32, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let start = vmid % SLOTS;
    (0..SLOTS)
        .map(|i| slot_addr(start.wrapping_add(i)))
        .find(|a| !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_loopback() {
        let none = BTreeSet::new();
        let a = allocate(100, &none).unwrap();
        assert_eq!(a, allocate(100, &none).unwrap());
        assert_eq!(a, Ipv4Addr::new(127, 77, 0, 101));
        for vmid in [100, 253, 254, 9000, 65_023, 65_024, 999_999_999] {
            let ip = allocate(vmid, &none).unwrap();
            assert!(ip.is_loopback());
            assert_eq!(ip.octets()[..2], [127, 77]);
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255, "{ip}");
        }
    }

    #[test]
    fn collision_takes_next_free() {
        let mut taken = BTreeSet::new();
        let first = allocate(100, &taken).unwrap();
        taken.insert(first);
        let second = allocate(100 + SLOTS, &taken).unwrap();
        assert_ne!(first, second);
        assert!(second.is_loopback());
    }
}
