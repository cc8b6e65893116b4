//! A PVE cluster as the client sees it: whether the host is a cluster member
//! (`/cluster/status` has a `cluster` entry), its nodes with their memory and CPU
//! (`/cluster/status` + `/cluster/resources`), the node that holds a guest, the node a
//! placement policy picks (from the memory committed to guests), and migration. A
//! standalone host is none of this: every call goes to the node file's node, as before.
//!
//! Where each guest is comes from one `GET /cluster/resources?type=vm`, kept for
//! [`GUEST_MAP_VALIDITY`] and amended by what this client does itself (clones, creates,
//! migrations, deletes). A guest the map does not hold, or a map too old, asks again; and
//! a call PVE answers with "not on this node" ([`PveError::is_not_on_node`]) asks again
//! and goes to where the guest is now ([`PveClient::on_guest`]), so a guest migrated by
//! someone else meanwhile is still found.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::client::{PveClient, PveError};
use super::guests::GuestKind;

/// How long the guest→node map is used before it is asked for again. Short: a guest moved
/// by someone else costs one call answered "not on this node" and one asking again, and
/// nothing else depends on it.
const GUEST_MAP_VALIDITY: Duration = Duration::from_secs(10);

/// What a client knows of its cluster (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct ClusterCell {
    /// Set once `/cluster/status` was read: whether it is a cluster.
    member: OnceLock<bool>,
    /// This run's guests by name, with their node and memory (bytes): counted as committed
    /// on that node by placement, made yet or not.
    placed: Mutex<HashMap<String, (String, u64)>>,
    /// Where each guest is, as last asked.
    guests: Mutex<Option<GuestMap>>,
    /// Held while the map is asked for, so guests missed at once wait for one answer.
    asking: tokio::sync::Mutex<()>,
}

/// Each guest's node, from `/cluster/resources` at `at`.
#[derive(Debug)]
struct GuestMap {
    at: Instant,
    nodes: HashMap<u32, String>,
}

impl ClusterCell {
    fn map(&self) -> std::sync::MutexGuard<'_, Option<GuestMap>> {
        self.guests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Guest `vmid`'s node, when the map holds it and is young enough.
    fn cached(&self, vmid: u32) -> Option<String> {
        let map = self.map();
        let m = map
            .as_ref()
            .filter(|m| m.at.elapsed() < GUEST_MAP_VALIDITY)?;
        m.nodes.get(&vmid).cloned()
    }

    /// Whether the map was asked for after `since`.
    fn asked_since(&self, since: Instant) -> bool {
        self.map().as_ref().is_some_and(|m| m.at >= since)
    }

    /// The map from a `/cluster/resources` listing of guests.
    fn learn(&self, list: &Value, at: Instant) {
        let nodes = list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        let vmid = u32::try_from(r["vmid"].as_u64()?).ok()?;
                        Some((vmid, r["node"].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        *self.map() = Some(GuestMap { at, nodes });
    }

    /// This client put guest `vmid` on `node` (or, `None`, removed it).
    fn moved(&self, vmid: u32, node: Option<&str>) {
        if let Some(m) = self.map().as_mut() {
            match node {
                Some(n) => m.nodes.insert(vmid, n.to_string()),
                None => m.nodes.remove(&vmid),
            };
        }
    }
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

    /// Every guest of the cluster (`/cluster/resources?type=vm`), which the guest→node map
    /// is then made from.
    pub(crate) async fn cluster_guests(&self) -> Result<Value, PveError> {
        let at = Instant::now();
        let list = self
            .get_with("/cluster/resources", &[("type", "vm".into())])
            .await?;
        self.cluster.learn(&list, at);
        Ok(list)
    }

    /// The node that holds guest `vmid`, and whether it was asked for just now: the node
    /// file's node on a standalone host; in a cluster, where the guest→node map says, asked
    /// again when it does not hold the guest or is too old (the node file's node when PVE
    /// lists no such guest, so PVE's own "does not exist" answers).
    async fn locate(&self, vmid: u32) -> Result<(String, bool), PveError> {
        if !self.is_cluster() {
            return Ok((self.node().to_string(), true));
        }
        if let Some(n) = self.cluster.cached(vmid) {
            return Ok((n, false));
        }
        let missed = Instant::now();
        let _one = self.cluster.asking.lock().await;
        // Another call asked while this one waited: its answer is as new.
        if !self.cluster.asked_since(missed) {
            self.cluster_guests().await?;
        }
        let node = self
            .cluster
            .map()
            .as_ref()
            .and_then(|m| m.nodes.get(&vmid).cloned());
        Ok((node.unwrap_or_else(|| self.node().to_string()), true))
    }

    /// The node that holds guest `vmid` (see [`PveClient::on_guest`] for calls to it).
    pub async fn guest_node(&self, vmid: u32) -> Result<String, PveError> {
        Ok(self.locate(vmid).await?.0)
    }

    /// Runs `call` on guest `vmid`'s API path (`/nodes/N/qemu/V`; the node is in
    /// [`GuestAt`]) on the node that holds it. When PVE answers that the guest is not on that
    /// node and the node came from the kept map, the map is asked for again and the call
    /// made once more where the guest is now (the first did nothing).
    pub(crate) async fn on_guest<T, F, Fut>(
        &self,
        kind: GuestKind,
        vmid: u32,
        call: F,
    ) -> Result<T, PveError>
    where
        F: Fn(GuestAt) -> Fut,
        Fut: Future<Output = Result<T, PveError>>,
    {
        let at = |node: String| GuestAt {
            path: format!("/nodes/{node}/{}/{vmid}", kind.segment()),
            node,
        };
        let (node, fresh) = self.locate(vmid).await?;
        match call(at(node.clone())).await {
            Err(e) if !fresh && e.is_not_on_node() => {
                self.cluster.moved(vmid, None);
                let (now, _) = self.locate(vmid).await?;
                if now == node {
                    return Err(e);
                }
                tracing::debug!("guest {vmid} is on {now} now, not {node}");
                call(at(now)).await
            }
            r => r,
        }
    }

    /// This client made guest `vmid` on `node`, or moved it there.
    pub(super) fn guest_now_on(&self, vmid: u32, node: &str) {
        self.cluster.moved(vmid, Some(node));
    }

    /// This client created a guest (its `vmid` among `params`) on `node`.
    pub(super) fn made_on(&self, params: &[(&str, String)], node: &str) {
        let vmid = params.iter().find(|(k, _)| *k == "vmid");
        if let Some(vmid) = vmid.and_then(|(_, v)| v.parse().ok()) {
            self.guest_now_on(vmid, node);
        }
    }

    /// This client deleted guest `vmid`.
    pub(super) fn guest_gone(&self, vmid: u32) {
        self.cluster.moved(vmid, None);
    }

    /// The online node `policy` picks for guest `name` of `memory_mb`: `spread` the one with
    /// the most free memory (then the least CPU in use), `pack` the one with the least free
    /// memory that still holds it.
    ///
    /// Free memory is the node's memory less what is committed on it, as PVE's HA `static`
    /// scheduler counts it: the configured memory of the guests running there, and this
    /// run's guests placed or reserved there (see [`PveClient::reserve`]) whether made yet or
    /// not. Not the node's `mem` figure: that is read apart from the guest listing and lags
    /// it (rrd), so a guest starting between the two reads was counted twice or not at all,
    /// and siblings made at the same time tied and took the same node.
    pub async fn choose_node(
        &self,
        policy: engine::manifest::NodePolicy,
        name: &str,
        memory_mb: u64,
    ) -> Result<String, PveError> {
        let nodes = self.cluster_nodes().await?;
        let guests = self.cluster_guests().await?;
        let want = memory_mb.saturating_mul(1 << 20);
        let mut placed = self
            .cluster
            .placed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let committed = committed_memory(&guests, &placed, name);
        let free = |n: &ClusterNode| {
            n.maxmem
                .saturating_sub(committed.get(&n.name).copied().unwrap_or(0))
        };
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
        let chosen = pick.name.clone();
        placed.insert(name.to_string(), (chosen.clone(), want));
        Ok(chosen)
    }

    /// Guest `name` of this run goes on `node` (pinned, or the node file's): placement
    /// counts its `memory_mb` there (see [`PveClient::choose_node`]).
    pub fn reserve(&self, name: &str, node: &str, memory_mb: u64) {
        let mut placed = self
            .cluster
            .placed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        placed.insert(
            name.to_string(),
            (node.to_string(), memory_mb.saturating_mul(1 << 20)),
        );
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
        let mut params = vec![("target", target.to_string())];
        if online {
            params.push(("online", "1".into()));
        }
        let params = &params;
        self.on_guest(kind, vmid, |at| async move {
            let path = format!("{}/migrate", at.path);
            self.run_task(Method::POST, &path, params, timeout).await
        })
        .await?;
        self.guest_now_on(vmid, target);
        Ok(())
    }
}

/// Memory committed on each node (bytes), for placing guest `name`: the configured memory
/// (`maxmem`) of each guest `guests` lists running, and `placed`'s (this run's guests but
/// `name`) on their nodes. One of ours that runs is counted once, as ours: by name, on the
/// node it was put on (a guest of that name elsewhere is someone else's).
fn committed_memory(
    guests: &Value,
    placed: &HashMap<String, (String, u64)>,
    name: &str,
) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for (_, (node, bytes)) in placed.iter().filter(|(g, _)| *g != name) {
        *out.entry(node.clone()).or_default() += bytes;
    }
    for g in guests.as_array().into_iter().flatten() {
        let Some(node) = g["node"].as_str() else {
            continue;
        };
        let ours = g["name"]
            .as_str()
            .and_then(|n| placed.get(n))
            .is_some_and(|(on, _)| on == node);
        if g["status"] == "running" && !ours {
            *out.entry(node.to_string()).or_default() += as_u64(&g["maxmem"]);
        }
    }
    out
}

/// Where a guest is, for a call to it: its node, and its API path there.
pub(crate) struct GuestAt {
    pub node: String,
    /// `/nodes/{node}/{qemu|lxc}/{vmid}`.
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GIB: u64 = 1 << 30;

    /// A guest of ours counts once on its node, made or not, running or not; someone
    /// else's counts while it runs; the guest being placed does not count itself.
    #[test]
    fn committed_memory_counts_ours_once_and_others_while_they_run() {
        let placed: HashMap<String, (String, u64)> =
            [("a", "pve2", 2 * GIB), ("b", "pve", GIB), ("c", "pve", GIB)]
                .into_iter()
                .map(|(g, n, b)| (g.to_string(), (n.to_string(), b)))
                .collect();
        let listing = json!([
            {"type": "node", "node": "pve", "status": "online", "maxmem": 64 * GIB},
            {"type": "qemu", "vmid": 100, "name": "c", "node": "pve", "status": "running", "maxmem": GIB},
            {"type": "qemu", "vmid": 101, "name": "a", "node": "pve2", "status": "stopped", "maxmem": 2 * GIB},
            {"type": "qemu", "vmid": 102, "name": "theirs", "node": "pve2", "status": "running", "maxmem": 4 * GIB},
            {"type": "qemu", "vmid": 103, "name": "idle", "node": "pve3", "status": "stopped", "maxmem": 8 * GIB},
            {"type": "qemu", "vmid": 104, "name": "c", "node": "pve3", "status": "running", "maxmem": 3 * GIB},
        ]);
        let c = committed_memory(&listing, &placed, "b");
        assert_eq!(c.get("pve"), Some(&GIB), "{c:?}");
        assert_eq!(c.get("pve2"), Some(&(6 * GIB)), "{c:?}");
        assert_eq!(c.get("pve3"), Some(&(3 * GIB)), "{c:?}");
    }
}
