//! Guests that may land on another node of a PVE cluster (`target_node:` naming another node,
//! or `placement:`): PVE clones a VM to another node only from a template whose disks are on
//! shared storage, onto shared storage (qemu-server `clone_vm`: "can't clone VM to node 'X'
//! (VM uses local storage)"), so those guests need the run's storages to be shared; a pinned
//! node must be an online member of the cluster.

use super::{connect_fix, Check};
use crate::pve::PveClient;

/// A guest of this host that may be cloned onto another cluster node.
#[derive(Clone, Debug)]
pub struct Elsewhere<'a> {
    pub name: &'a str,
    /// `target_node:`, or `None` for a node placed by policy.
    pub target_node: Option<&'a str>,
    /// The storage its disks go to (`storage:` over the node file's `datastore:`).
    pub storage: &'a str,
}

pub async fn placement_checks(
    client: &PveClient,
    host: &str,
    datastore: &str,
    guests: &[Elsewhere<'_>],
) -> Vec<Check> {
    let own = client.node();
    let guests: Vec<&Elsewhere> = guests
        .iter()
        .filter(|g| g.target_node != Some(own))
        .collect();
    if guests.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    match client.detect_cluster().await {
        Ok(true) => {}
        Ok(false) => {
            let names: Vec<&str> = guests.iter().map(|g| g.name).collect();
            out.push(Check::fail(
                "placement",
                format!(
                    "{} set `target_node:` or `placement:`, but {host} is not a PVE cluster \
                     member (its /cluster/status has no cluster)",
                    names.join(", ")
                ),
                format!(
                    "remove those keys, or point -H at a cluster's node file instead of {host}"
                ),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                "placement",
                e.to_string(),
                connect_fix(&e, host),
            ));
            return out;
        }
    }
    let nodes = match client.cluster_nodes().await {
        Ok(n) => n,
        Err(e) => {
            out.push(Check::fail(
                "placement",
                e.to_string(),
                connect_fix(&e, host),
            ));
            return out;
        }
    };
    for g in guests.iter().filter(|g| g.target_node.is_some()) {
        let want = g.target_node.unwrap_or_default();
        match nodes.iter().find(|n| n.name == want) {
            Some(n) if n.online => {}
            found => {
                let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
                let why = match found {
                    Some(_) => format!("node '{want}' is offline"),
                    None => format!("no node '{want}' (the cluster has: {})", names.join(", ")),
                };
                out.push(Check::fail(
                    "placement",
                    format!("'{}' is pinned to {why}", g.name),
                    format!(
                        "set `target_node:` of '{}' to an online node, or remove it",
                        g.name
                    ),
                ));
            }
        }
    }
    let storages = match client
        .get_with("/cluster/resources", &[("type", "storage".into())])
        .await
    {
        Ok(s) => s,
        Err(e) => {
            out.push(Check::fail(
                "placement",
                e.to_string(),
                connect_fix(&e, host),
            ));
            return out;
        }
    };
    let shared = |id: &str| {
        storages.as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["storage"] == id && s["shared"].as_u64() == Some(1))
        })
    };
    let mut local: Vec<&str> = std::iter::once(datastore)
        .chain(guests.iter().map(|g| g.storage))
        .filter(|s| !shared(s))
        .collect();
    local.sort_unstable();
    local.dedup();
    let names: Vec<&str> = guests.iter().map(|g| g.name).collect();
    if local.is_empty() {
        out.push(Check::pass(
            "placement",
            format!(
                "{} may go to other nodes than {own}: their storage is shared",
                names.join(", ")
            ),
        ));
    } else {
        out.push(Check::fail(
            "placement",
            format!(
                "{} may go to other nodes than {own}, but storage {} is local to each node: \
                 PVE clones to another node only from and onto shared storage",
                names.join(", "),
                local
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "set `datastore:` in nodes/{host}.yaml (and any `storage:` of those nodes) to a \
                 shared storage (`pvesm status`; shared in /etc/pve/storage.cfg), or pin them \
                 to {own} with `target_node: {own}`"
            ),
        ));
    }
    out
}
