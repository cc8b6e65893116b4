//! Per-guest loopback addresses. Each guest gets one address in the simulator's guest net
//! (`127.77.0.0/16` by default), derived from its vmid so the same vmid usually gets the same
//! address, and never outside `127.0.0.0/8`: the guest's agent reports it and its SSH server
//! listens on it.
//!
//! The net is a `/16` inside `127.0.0.0/8`. A simulator bound on a guest address of another
//! simulator (a nested host: `driver sim serve --bind 127.77.0.101:8006` inside a guest) takes
//! the next `/16` (`127.78.0.0/16`) unless told otherwise, so the two address plans never meet.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// Usable host numbers per `127.N.x.0/24` (1..=254: no `.0`, no `.255`, to look ordinary).
const PER_BLOCK: u32 = 254;
const SLOTS: u32 = 256 * PER_BLOCK;

/// The default guest net, `127.77.0.0/16`.
pub(crate) const DEFAULT_NET: [u8; 2] = [127, 77];

/// The first guest net derived nets start from; below it, a bind address is a "host" one.
const FIRST_GUEST_OCTET: u8 = 77;

/// The guest net for a simulator bound on `bind` when none is configured: the default one, or
/// for a simulator bound inside a guest net `127.N.0.0/16` (N >= 77), the next one up.
pub(crate) fn derived_net(bind: IpAddr) -> [u8; 2] {
    let v4 = match bind {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match v4.map(|a| a.octets()) {
        Some([127, n, _, _]) if (FIRST_GUEST_OCTET..u8::MAX).contains(&n) => [127, n + 1],
        _ => DEFAULT_NET,
    }
}

/// Whether `net` is a usable guest net: inside `127.0.0.0/8` and not `127.0.0.0/16` (where
/// `127.0.0.1` and the simulator's own API usually live).
pub(crate) fn valid_net(net: [u8; 2]) -> bool {
    net[0] == 127 && net[1] != 0
}

fn slot_addr(net: [u8; 2], slot: u32) -> Ipv4Addr {
    let slot = slot % SLOTS;
    // Both parts fit a byte: slot / 254 < 256 and slot % 254 + 1 <= 254.
    let x = (slot / PER_BLOCK) as u8;
    let y = (slot % PER_BLOCK + 1) as u8;
    Ipv4Addr::new(net[0], net[1], x, y)
}

/// The address for `vmid` in `net`: its own slot when free, else the next free one.
/// `None` only when all 65,024 addresses are taken.
pub(crate) fn allocate(net: [u8; 2], vmid: u32, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let start = vmid % SLOTS;
    (0..SLOTS)
        .map(|i| slot_addr(net, start.wrapping_add(i)))
        .find(|a| !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_loopback() {
        let none = BTreeSet::new();
        let a = allocate(DEFAULT_NET, 100, &none).unwrap();
        assert_eq!(a, allocate(DEFAULT_NET, 100, &none).unwrap());
        assert_eq!(a, Ipv4Addr::new(127, 77, 0, 101));
        for vmid in [100, 253, 254, 9000, 65_023, 65_024, 999_999_999] {
            let ip = allocate(DEFAULT_NET, vmid, &none).unwrap();
            assert!(ip.is_loopback());
            assert_eq!(ip.octets()[..2], [127, 77]);
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255, "{ip}");
        }
        let nested = allocate([127, 78], 100, &none).unwrap();
        assert_eq!(nested, Ipv4Addr::new(127, 78, 0, 101));
    }

    #[test]
    fn collision_takes_next_free() {
        let mut taken = BTreeSet::new();
        let first = allocate(DEFAULT_NET, 100, &taken).unwrap();
        taken.insert(first);
        let second = allocate(DEFAULT_NET, 100 + SLOTS, &taken).unwrap();
        assert_ne!(first, second);
        assert!(second.is_loopback());
    }

    #[test]
    fn nested_sims_take_the_next_net() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(derived_net(ip("127.0.0.1")), [127, 77]);
        assert_eq!(derived_net(ip("::1")), [127, 77]);
        assert_eq!(derived_net(ip("127.0.5.7")), [127, 77]);
        assert_eq!(derived_net(ip("127.77.0.101")), [127, 78]);
        assert_eq!(derived_net(ip("127.78.3.4")), [127, 79]);
        assert!(valid_net([127, 78]) && !valid_net([10, 0]) && !valid_net([127, 0]));
    }
}
