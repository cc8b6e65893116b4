//! A PVE cluster as the client sees it: whether the host is a cluster member
//! (`/cluster/status` has a `cluster` entry), its nodes with their free memory and CPU
//! (`/cluster/status` + `/cluster/resources`), the node that holds a guest now (asked of
//! `/cluster/resources` each time, so a guest migrated meanwhile is still found), the node
//! a placement policy picks, and migration. A standalone host is none of this: every call
//! goes to the node file's node, as before.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::{PveClient, PveError};
use super::guests::GuestKind;

/// What a client knows of its cluster (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct ClusterCell {
    /// Set once `/cluster/status` was read: whether it is a cluster.
    member: OnceLock<bool>,
    /// Memory (bytes) this run placed on each node and PVE may not show yet.
    placed: Mutex<HashMap<String, u64>>,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterNode {
    pub name: String,
    pub online: bool,
    /// Memory in use and in all (bytes).
    pub mem: u64,
    pub maxmem: u64,
    /// CPU in use (a fraction of all) and the number of CPUs.
    pub cpu: f64,
    pub maxcpu: u64,
}

impl ClusterNode {
    fn free(&self) -> u64 {
        self.maxmem.saturating_sub(self.mem)
    }
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().map(|f| f as u64))
        .unwrap_or(0)
}

impl PveClient {
    /// Reads `/cluster/status` once: a cluster member's guest calls go, from then on, to the
    /// node that holds each guest. Returns whether it is a cluster.
    pub async fn detect_cluster(&self) -> Result<bool, PveError> {
        if let Some(m) = self.cluster.member.get() {
            return Ok(*m);
        }
        let st = self.get("/cluster/status").await?;
        let member = st
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["type"] == "cluster"));
        let _ = self.cluster.member.set(member);
        Ok(member)
    }

    /// Whether [`PveClient::detect_cluster`] found a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.member.get().copied().unwrap_or(false)
    }

    /// The cluster's nodes: membership and `online` from `/cluster/status`, memory and CPU
    /// from `/cluster/resources?type=node`. A standalone host: its own node alone.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, PveError> {
        let st = self.get("/cluster/status").await?;
        let res = self
            .get_with("/cluster/resources", &[("type", "node".into())])
            .await?;
        let stats: HashMap<&str, &Value> = res
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| Some((r["node"].as_str()?, r)))
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<ClusterNode> = st
            .as_array()
            .map(|a| a.iter().filter(|e| e["type"] == "node").collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let name = e["name"].as_str()?;
                let r = stats.get(name).copied().unwrap_or(&Value::Null);
                Some(ClusterNode {
                    name: name.to_string(),
                    online: as_u64(&e["online"]) == 1 && r["status"] != "offline",
                    mem: as_u64(&r["mem"]),
                    maxmem: as_u64(&r["maxmem"]),
                    cpu: r["cpu"].as_f64().unwrap_or(0.0),
                    maxcpu: as_u64(&r["maxcpu"]),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The node that holds guest `vmid` now: the node file's node on a standalone host; in
    /// a cluster, where `/cluster/resources` lists it (the node file's node when it is not
    /// listed, so PVE's own "does not exist" answers).
    pub async fn guest_node(&self, vmid: u32) -> Result<String, PveError> {
        if !self.is_cluster() {
            return Ok(self.node().to_string());
        }
        let res = self
            .get_with("/cluster/resources", &[("type", "vm".into())])
            .await?;
        Ok(res
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|r| r["vmid"].as_u64() == Some(u64::from(vmid)))
                    .and_then(|r| r["node"].as_str())
            })
            .unwrap_or(self.node())
            .to_string())
    }

    /// The online node `policy` picks for a guest of `memory_mb`: `spread` the one with
    /// the most free memory (then the least CPU in use), `pack` the one with the least free
    /// memory that still holds it. Memory placed by this client counts as used, so guests
    /// placed at once spread too.
    pub async fn choose_node(
        &self,
        policy: engine::manifest::NodePolicy,
        memory_mb: u64,
    ) -> Result<String, PveError> {
        let nodes = self.cluster_nodes().await?;
        let want = memory_mb.saturating_mul(1 << 20);
        let mut placed = self
            .cluster
            .placed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let free = |n: &ClusterNode| n.free().saturating_sub(*placed.get(&n.name).unwrap_or(&0));
        let online = nodes.iter().filter(|n| n.online);
        let pick = match policy {
            engine::manifest::NodePolicy::Spread => online.max_by(|a, b| {
                free(a)
                    .cmp(&free(b))
                    .then(b.cpu.total_cmp(&a.cpu))
                    .then(b.name.cmp(&a.name))
            }),
            engine::manifest::NodePolicy::Pack => online
                .filter(|n| free(n) >= want)
                .min_by(|a, b| free(a).cmp(&free(b)).then(a.name.cmp(&b.name))),
        };
        let Some(pick) = pick else {
            return Err(PveError::Shape {
                path: "/cluster/resources".into(),
                message: format!(
                    "no online cluster node has {memory_mb} MiB free for placement: {} (nodes: {})",
                    policy.as_str(),
                    nodes
                        .iter()
                        .map(|n| format!(
                            "{} {}",
                            n.name,
                            if n.online { "online" } else { "offline" }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        *placed.entry(pick.name.clone()).or_default() += want;
        Ok(pick.name.clone())
    }

    /// Migrates a guest to node `target` (`online`: a running VM live) and waits.
    pub async fn migrate_guest(
        &self,
        kind: GuestKind,
        vmid: u32,
        target: &str,
        online: bool,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let node = self.guest_node(vmid).await?;
        let path = format!("/nodes/{node}/{}/{vmid}/migrate", kind.segment());
        let mut params = vec![("target", target.to_string())];
        if online {
            params.push(("online", "1".into()));
        }
        self.run_task(Method::POST, &path, &params, timeout).await
    }
}
