//! A simulated PVE cluster's membership: its name and its nodes, each with a corosync
//! node id and an API endpoint of its own on a loopback address of its own (so one can be
//! down while the others answer). A standalone simulator has none of
//! this.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The cluster's name, as `/cluster/status` gives it.
pub(crate) const CLUSTER_NAME: &str = "pvesim";

/// One node of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub name: String,
    /// corosync's node id (from 1).
    pub nodeid: u32,
    /// Where its API listens.
    pub addr: SocketAddr,
}

/// The cluster's nodes, in node id order (the first is the simulator's own `node_name`).
#[derive(Debug, Clone)]
pub(crate) struct ClusterInfo {
    pub members: Vec<Member>,
}

impl ClusterInfo {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// The names of a cluster of `n` nodes whose first is `first`: `pve`, `pve2`, `pve3`, ...
pub(crate) fn node_names(first: &str, n: u32) -> Vec<String> {
    (1..=n.max(1))
        .map(|i| match i {
            1 => first.to_string(),
            i => format!("{first}{i}"),
        })
        .collect()
}

/// Where node `i` (from 0) listens: the next loopback addresses after the first node's
/// (`127.0.0.1`, `127.0.0.2`, ...), on the same port (0: a free one each).
pub(crate) fn member_bind(first: SocketAddr, i: u32) -> SocketAddr {
    match first.ip() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let next = u32::from_be_bytes([a, b, c, d]).wrapping_add(i);
            let ip = Ipv4Addr::from(next);
            // Never out of 127.0.0.0/8: the last resort is the first node's address.
            let ip = if ip.is_loopback() { ip } else { v4 };
            SocketAddr::new(IpAddr::V4(ip), first.port())
        }
        IpAddr::V6(_) => first,
    }
}

/// The cluster's shared storage (Ceph RBD): on every node, the same volumes.
pub(crate) const SHARED_STORAGE: &str = "ceph-vm";
