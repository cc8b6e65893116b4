//! The resource layer behind `driver get | describe | vm | ct | tasks`: the guests, nodes,
//! storages and tasks of one PVE node as plain rows (read through the one [`PveClient`]),
//! selectors that pick guests ([`select`]), and what the verbs do to them ([`ops`]:
//! power, delete with its ownership rule, config changes as a diff, create), snapshots
//! ([`snapshots`]), backups ([`backups`]) and clearing a stale config lock ([`locks`]). Rendering
//! these rows is the CLI's business.

pub mod backups;
pub mod create;
pub mod locks;
pub mod ops;
pub mod select;
pub mod snapshots;

use serde::Serialize;
use serde_json::Value;

use crate::pve::{GuestKind, PveClient, PveError};

/// `vm` or `ct`, as the CLI names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Vm,
    Ct,
}

impl Kind {
    pub fn pve(self) -> GuestKind {
        match self {
            Kind::Vm => GuestKind::Qemu,
            Kind::Ct => GuestKind::Lxc,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Ct => "ct",
        }
    }

    fn of(k: GuestKind) -> Kind {
        match k {
            GuestKind::Qemu => Kind::Vm,
            GuestKind::Lxc => Kind::Ct,
        }
    }
}

/// One guest as the node lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuestRow {
    pub vmid: u32,
    pub name: String,
    pub kind: Kind,
    pub node: String,
    /// `running`, `stopped`, ...
    pub status: String,
    pub cores: Option<u64>,
    pub memory_mb: Option<u64>,
    /// The size of its boot disk (`maxdisk`), in GiB.
    pub disk_gb: Option<u64>,
    pub uptime_s: Option<u64>,
    pub tags: Vec<String>,
    pub template: bool,
    /// A config lock (`clone`, `backup`, ...) while a task holds one.
    pub lock: Option<String>,
    /// The driver state whose tag it carries (`driver-<state>`): driver made it.
    pub driver_state: Option<String>,
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub status: String,
    pub cpus: Option<u64>,
    pub memory_mb: Option<u64>,
    pub memory_used_mb: Option<u64>,
    pub uptime_s: Option<u64>,
}

/// One storage of the node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StorageRow {
    pub storage: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Vec<String>,
    pub active: bool,
    pub total_gb: Option<u64>,
    pub used_gb: Option<u64>,
    pub avail_gb: Option<u64>,
}

/// One task of the node (newest first, as PVE lists them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskRow {
    pub upid: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The guest (or other object) it works on.
    pub id: String,
    pub user: String,
    pub starttime: Option<u64>,
    pub endtime: Option<u64>,
    /// `running`, else the exit status (`OK` or the error).
    pub status: String,
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A number PVE may send as a number or as a string.
fn num(v: &Value, k: &str) -> Option<u64> {
    let x = v.get(k)?;
    x.as_u64()
        .or_else(|| x.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
}

fn list<'v>(v: &'v Value, path: &str) -> Result<&'v Vec<Value>, PveError> {
    v.as_array().ok_or_else(|| PveError::Shape {
        path: path.to_string(),
        message: "expected a list".into(),
    })
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// PVE tags as a list (`a;b`, also `,` or ` ` separated).
pub fn split_tags(tags: &str) -> Vec<String> {
    tags.split([';', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every VM and container of the client's node: two calls, one per kind. In a cluster,
/// of every node: one `/cluster/resources` listing, which says where each guest is (so
/// the calls made for a row go to its node).
pub async fn guests(client: &PveClient) -> Result<Vec<GuestRow>, PveError> {
    // A host that cannot say is taken as standalone: its own listing reports the error.
    let listings: Vec<(String, Value, Option<GuestKind>)> =
        if client.detect_cluster().await.unwrap_or(false) {
            let all = client.cluster_guests().await?;
            vec![("/cluster/resources".into(), all, None)]
        } else {
            let mut v = Vec::new();
            for kind in [GuestKind::Qemu, GuestKind::Lxc] {
                let path = format!("/nodes/{}/{}", client.node(), kind.segment());
                let list = client.get(&path).await?;
                v.push((path, list, Some(kind)));
            }
            v
        };
    let mut out = Vec::new();
    for (path, v, kind) in &listings {
        for g in list(v, path)? {
            let Some(vmid) = num(g, "vmid").and_then(|n| u32::try_from(n).ok()) else {
                continue;
            };
            let (kind, node) = match kind {
                Some(k) => (*k, client.node().to_string()),
                None => match g["type"].as_str() {
                    Some("qemu") => (GuestKind::Qemu, str_of(g, "node")),
                    Some("lxc") => (GuestKind::Lxc, str_of(g, "node")),
                    _ => continue,
                },
            };
            let tags = split_tags(&str_of(g, "tags"));
            let driver_state = engine::ownership::state_in_tags(&tags.join(";")).map(String::from);
            let lock = Some(str_of(g, "lock")).filter(|l| !l.is_empty());
            out.push(GuestRow {
                vmid,
                name: str_of(g, "name"),
                kind: Kind::of(kind),
                node,
                status: str_of(g, "status"),
                // The cluster listing says `maxcpu` where a node's says `cpus`.
                cores: num(g, "cpus").or_else(|| num(g, "maxcpu")),
                memory_mb: num(g, "maxmem").map(|m| m / MIB),
                disk_gb: num(g, "maxdisk").map(|d| d / GIB),
                uptime_s: num(g, "uptime"),
                tags,
                template: num(g, "template") == Some(1),
                lock,
                driver_state,
            });
        }
    }
    out.sort_by_key(|g| g.vmid);
    Ok(out)
}

/// The cluster's nodes (`GET /nodes`).
pub async fn nodes(client: &PveClient) -> Result<Vec<NodeRow>, PveError> {
    let v = client.get("/nodes").await?;
    let mut out: Vec<NodeRow> = list(&v, "/nodes")?
        .iter()
        .map(|n| NodeRow {
            node: str_of(n, "node"),
            status: str_of(n, "status"),
            cpus: num(n, "maxcpu"),
            memory_mb: num(n, "maxmem").map(|m| m / MIB),
            memory_used_mb: num(n, "mem").map(|m| m / MIB),
            uptime_s: num(n, "uptime"),
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
}

/// The node's storages, with their usage.
pub async fn storages(client: &PveClient) -> Result<Vec<StorageRow>, PveError> {
    let path = format!("/nodes/{}/storage", client.node());
    let v = client.get(&path).await?;
    let mut out: Vec<StorageRow> = list(&v, &path)?
        .iter()
        .map(|s| StorageRow {
            storage: str_of(s, "storage"),
            kind: str_of(s, "type"),
            content: str_of(s, "content")
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            // A listing without the field counts as active (as `StorageInfo::usable`).
            active: num(s, "active").unwrap_or(1) == 1,
            total_gb: num(s, "total").map(|b| b / GIB),
            used_gb: num(s, "used").map(|b| b / GIB),
            avail_gb: num(s, "avail").map(|b| b / GIB),
        })
        .collect();
    out.sort_by(|a, b| a.storage.cmp(&b.storage));
    Ok(out)
}

/// The node's recent tasks (at most `limit`; of one guest with `vmid`), running ones
/// too (PVE lists only ended ones unless asked for `source=all`), newest first.
pub async fn tasks(
    client: &PveClient,
    limit: u32,
    vmid: Option<u32>,
) -> Result<Vec<TaskRow>, PveError> {
    let path = format!("/nodes/{}/tasks", client.node());
    let mut params = vec![("limit", limit.to_string()), ("source", "all".to_string())];
    if let Some(id) = vmid {
        params.push(("vmid", id.to_string()));
    }
    let v = client.get_with(&path, &params).await?;
    Ok(list(&v, &path)?
        .iter()
        .map(|t| {
            let status = str_of(t, "status");
            TaskRow {
                upid: str_of(t, "upid"),
                kind: str_of(t, "type"),
                id: str_of(t, "id"),
                user: str_of(t, "user"),
                starttime: num(t, "starttime"),
                endtime: num(t, "endtime"),
                // PVE lists a running task without `status` (or with `running`).
                status: if status.is_empty() {
                    "running".into()
                } else {
                    status
                },
            }
        })
        .collect())
}
