//! The host and cluster views: version, nodes and node status, `/cluster/status`,
//! `/cluster/nextid` and `/cluster/resources` (node, guests, storages).

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::request::{data, ApiRequest};
use super::storage::{self, StorageResource, GIB, LOCAL_SIZE};
use crate::error::{ApiError, ApiResult};
use crate::ids::first_free_vmid;
use crate::model::{Guest, GuestKind};
use crate::schema::{specs, validate};
use crate::state::Shared;

/// The PVE release pvesim answers as. Version-dependent texts follow it: the 401 reason
/// (`Authentication failed!` since pve-manager 9.1.5, `PVE/HTTPServer.pm` `auth_handler`).
pub(crate) const PVE_VERSION: &str = "9.2.11";
/// Its release line and the pve-manager commit it was built from (`repoid`, 16 hex digits).
pub(crate) const PVE_RELEASE: &str = "9.2";
pub(crate) const PVE_REPOID: &str = "f6997e698c7933ea";
const NODE_MEM: u64 = 64 * GIB;
const NODE_CPUS: u64 = 16;

/// `GET /version`.
#[derive(Serialize)]
struct Version {
    version: &'static str,
    release: &'static str,
    repoid: &'static str,
}

/// One node, in `GET /nodes` and `/cluster/resources`.
#[derive(Serialize)]
struct NodeEntry {
    node: String,
    id: String,
    #[serde(rename = "type")]
    ty: &'static str,
    status: &'static str,
    level: &'static str,
    cpu: f64,
    maxcpu: u64,
    mem: u64,
    maxmem: u64,
    disk: u64,
    maxdisk: u64,
    uptime: u64,
    /// `GET /nodes` only: `/cluster/resources` node entries carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    ssl_fingerprint: Option<String>,
}

/// One member of `GET /cluster/status`.
#[derive(Serialize)]
struct ClusterMember {
    id: String,
    name: String,
    #[serde(rename = "type")]
    ty: &'static str,
    ip: String,
    level: &'static str,
    local: u8,
    nodeid: u32,
    online: u8,
}

/// The cluster's own entry in `GET /cluster/status` (pve-manager `PVE/API2/Cluster.pm`
/// `get_status`: from pmxcfs's `clinfo`).
#[derive(Serialize)]
struct ClusterEntry {
    id: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    nodes: usize,
    quorate: u8,
    version: u32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum StatusEntry {
    Cluster(ClusterEntry),
    Node(ClusterMember),
}

/// `GET /nodes/{node}/status`.
#[derive(Serialize)]
struct NodeStatus {
    uptime: u64,
    cpu: f64,
    wait: f64,
    loadavg: [&'static str; 3],
    cpuinfo: CpuInfo,
    memory: Memory,
    swap: Swap,
    rootfs: RootFs,
    ksm: Ksm,
    kversion: &'static str,
    pveversion: String,
    #[serde(rename = "current-kernel")]
    current_kernel: Kernel,
    #[serde(rename = "boot-info")]
    boot_info: BootInfo,
}

/// pve-common `PVE/ProcFSTools.pm` `read_cpuinfo`, as `GET /nodes/{node}/status` gives it.
#[derive(Serialize)]
struct CpuInfo {
    user_hz: u32,
    vendor: &'static str,
    /// From `/proc/cpuinfo` by a regex: a string.
    family: &'static str,
    model: &'static str,
    cpus: u64,
    sockets: u32,
    cores: u64,
    mhz: &'static str,
    hvm: &'static str,
    flags: &'static str,
}

#[derive(Serialize)]
struct Memory {
    total: u64,
    used: u64,
    free: u64,
    available: u64,
}

#[derive(Serialize)]
struct Swap {
    total: u64,
    used: u64,
    free: u64,
}

#[derive(Serialize)]
struct RootFs {
    total: u64,
    used: u64,
    free: u64,
    avail: u64,
}

#[derive(Serialize)]
struct Ksm {
    shared: u8,
}

#[derive(Serialize)]
struct Kernel {
    sysname: &'static str,
    release: &'static str,
    machine: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct BootInfo {
    mode: &'static str,
    secureboot: u8,
}

/// One guest in `GET /cluster/resources`.
#[derive(Serialize)]
struct GuestResource {
    id: String,
    #[serde(rename = "type")]
    ty: &'static str,
    vmid: u32,
    name: String,
    node: String,
    status: &'static str,
    template: u8,
    maxcpu: u64,
    cpu: f64,
    maxmem: u64,
    mem: u64,
    maxdisk: u64,
    disk: u64,
    uptime: u64,
    netin: u64,
    netout: u64,
    diskread: u64,
    diskwrite: u64,
    /// QEMU only: the host's view of its memory (pve-manager `PVE/API2Tools.pm`
    /// `extract_vm_stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    memhost: Option<u64>,
    /// As stored: a string, or whatever the config holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<String>,
}

/// Anything `GET /cluster/resources` lists.
#[derive(Serialize)]
#[serde(untagged)]
enum Resource {
    Node(NodeEntry),
    Guest(GuestResource),
    Storage(StorageResource),
}

pub(crate) fn version() -> ApiResult<Value> {
    data(Version {
        version: PVE_VERSION,
        release: PVE_RELEASE,
        repoid: PVE_REPOID,
    })
}

fn uptime(shared: &Shared) -> u64 {
    shared.started.elapsed().as_secs() + 86_400
}

/// The memory node `shared.node`'s running guests take (and 2 GiB for the host itself).
fn mem_used(shared: &Shared) -> u64 {
    let st = shared.lock();
    st.guests
        .values()
        .filter(|g| g.running && g.node_or(&shared.primary) == shared.node)
        .map(|g| g.memory_mb().saturating_mul(1 << 20))
        .fold(2 * GIB, u64::saturating_add)
}

/// A running guest's share of its node's CPUs (pvesim's guests idle at 1 %).
fn cpu_used(shared: &Shared) -> f64 {
    let st = shared.lock();
    let cores: u64 = st
        .guests
        .values()
        .filter(|g| g.running && g.node_or(&shared.primary) == shared.node)
        .map(|g| g.cores())
        .sum();
    0.03 + 0.01 * cores as f64 / NODE_CPUS as f64
}

/// Node `shared.node`; a node that is down is `offline` with no figures (pve-manager
/// `PVE/API2Tools.pm` `extract_node_stats`: only members online get their rrd stats).
fn node_entry(shared: &Shared) -> NodeEntry {
    let online = !shared.node_down(&shared.node);
    NodeEntry {
        node: shared.node.clone(),
        id: format!("node/{}", shared.node),
        ty: "node",
        status: if online { "online" } else { "offline" },
        level: "",
        cpu: if online { cpu_used(shared) } else { 0.0 },
        maxcpu: NODE_CPUS,
        mem: if online {
            mem_used(shared).min(NODE_MEM)
        } else {
            0
        },
        maxmem: NODE_MEM,
        disk: 8 * GIB,
        maxdisk: LOCAL_SIZE,
        uptime: if online { uptime(shared) } else { 0 },
        ssl_fingerprint: Some(shared.fingerprint.clone()),
    }
}

/// The simulator's nodes, each as itself.
fn all_nodes(shared: &Shared) -> Vec<Shared> {
    match &shared.cluster {
        Some(c) => c.members.iter().map(|m| shared.at(&m.name)).collect(),
        None => vec![shared.clone()],
    }
}

pub(crate) fn nodes(shared: &Arc<Shared>) -> ApiResult<Value> {
    data(all_nodes(shared).iter().map(node_entry).collect::<Vec<_>>())
}

/// `GET /cluster/status`: a standalone node has only its own entry (`nodeid` 0, PVE's
/// fake entry without a cluster); a cluster has its entry and one per member, `local` the
/// node whose endpoint answered.
pub(crate) fn cluster_status(shared: &Arc<Shared>) -> ApiResult<Value> {
    let Some(c) = &shared.cluster else {
        return data([ClusterMember {
            id: format!("node/{}", shared.node),
            name: shared.node.clone(),
            ty: "node",
            ip: "127.0.0.1".to_string(),
            level: "",
            local: 1,
            nodeid: 0,
            online: 1,
        }]);
    };
    let mut out = vec![StatusEntry::Cluster(ClusterEntry {
        id: "cluster",
        name: crate::cluster::CLUSTER_NAME,
        ty: "cluster",
        nodes: c.members.len(),
        quorate: 1,
        version: c.members.len() as u32,
    })];
    for m in &c.members {
        out.push(StatusEntry::Node(ClusterMember {
            id: format!("node/{}", m.name),
            name: m.name.clone(),
            ty: "node",
            ip: m.addr.ip().to_string(),
            level: "",
            local: u8::from(m.name == shared.node),
            nodeid: m.nodeid,
            online: u8::from(!shared.node_down(&m.name)),
        }));
    }
    data(out)
}

/// `GET /nodes/{node}/status`. `cpuinfo.flags` has `vmx`: nested virtualization is available.
pub(crate) fn node_status(shared: &Arc<Shared>) -> ApiResult<Value> {
    let used = mem_used(shared).min(NODE_MEM);
    data(NodeStatus {
        uptime: uptime(shared),
        cpu: 0.03,
        wait: 0.0,
        loadavg: ["0.12", "0.08", "0.05"],
        cpuinfo: CpuInfo {
            user_hz: 100,
            vendor: "GenuineIntel",
            family: "6",
            model: "pvesim virtual CPU",
            cpus: NODE_CPUS,
            sockets: 1,
            cores: NODE_CPUS,
            mhz: "3000.000",
            hvm: "1",
            flags: "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc pni vmx ssse3 sse4_1 sse4_2 x2apic popcnt aes xsave avx hypervisor",
        },
        memory: Memory {
            total: NODE_MEM,
            used,
            free: NODE_MEM - used,
            available: NODE_MEM - used,
        },
        swap: Swap {
            total: 8 * GIB,
            used: 0,
            free: 8 * GIB,
        },
        rootfs: RootFs {
            total: LOCAL_SIZE,
            used: 8 * GIB,
            free: LOCAL_SIZE - 8 * GIB,
            avail: LOCAL_SIZE - 8 * GIB,
        },
        ksm: Ksm { shared: 0 },
        kversion: "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z) x86_64",
        pveversion: format!("pve-manager/{PVE_VERSION}/{PVE_REPOID}"),
        current_kernel: Kernel {
            sysname: "Linux",
            release: "6.14.8-2-pve",
            machine: "x86_64",
            version: "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2",
        },
        boot_info: BootInfo {
            mode: "efi",
            secureboot: 0,
        },
    })
}

/// `GET /cluster/nextid[?vmid=N]`: the lowest free vmid from 100, or N if free. PVE answers
/// the id as a JSON string.
pub(crate) fn nextid(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    validate(&req.params, specs::NEXTID, None)?;
    let st = shared.lock();
    if let Some(want) = req.params.int("vmid") {
        let want = want as u32;
        if st.guests.contains_key(&want) {
            return Err(ApiError::param("vmid", format!("VM {want} already exists")));
        }
        return Ok(json!(want.to_string()));
    }
    let free = first_free_vmid(|id| st.guests.contains_key(&id))
        .ok_or_else(|| ApiError::internal("unable to get any free VMID in range [100, 1000000]"))?;
    Ok(json!(free.to_string()))
}

fn guest_resource(node: &str, g: &Guest, node_up: bool) -> GuestResource {
    let t = match g.kind {
        GuestKind::Qemu => "qemu",
        GuestKind::Lxc => "lxc",
    };
    GuestResource {
        id: format!("{t}/{}", g.vmid),
        ty: t,
        vmid: g.vmid,
        name: g.name(),
        node: node.to_string(),
        // A down node's guests are `unknown` (no rrd data reaches the others).
        status: match (node_up, g.running) {
            (false, _) => "unknown",
            (true, true) => "running",
            (true, false) => "stopped",
        },
        template: u8::from(g.template()),
        maxcpu: g.cores(),
        cpu: if g.running { 0.01 } else { 0.0 },
        maxmem: g.memory_mb() << 20,
        mem: super::guests::mem_used(g),
        maxdisk: g.maxdisk(),
        disk: 0,
        uptime: g.uptime(),
        netin: 0,
        netout: 0,
        diskread: 0,
        diskwrite: 0,
        memhost: (g.kind == GuestKind::Qemu).then(|| super::guests::mem_used(g)),
        tags: g.config.get("tags").cloned(),
        lock: g.lock_prop(),
    }
}

/// `GET /cluster/resources[?type=vm|storage|node]`.
pub(crate) fn resources(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let ty = req.params.get("type");
    if let Some(t) = ty {
        let allowed = ["vm", "storage", "node", "sdn", "pool"];
        if !allowed.contains(&t) {
            return Err(ApiError::param(
                "type",
                format!(
                    "value '{t}' does not have a value in the enumeration '{}'",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let mut out = Vec::new();
    let nodes = all_nodes(shared);
    if ty.is_none() || ty == Some("node") {
        // pve-manager `PVE/API2/Cluster.pm` `resources`: node entries come from the rrd
        // data and have no `ssl_fingerprint` (that is `GET /nodes`).
        out.extend(nodes.iter().map(|n| {
            Resource::Node(NodeEntry {
                ssl_fingerprint: None,
                ..node_entry(n)
            })
        }));
    }
    if ty.is_none() || ty == Some("vm") {
        let down: Vec<bool> = nodes.iter().map(|n| shared.node_down(&n.node)).collect();
        let st = shared.lock();
        out.extend(st.guests.values().map(|g| {
            let node = g.node_or(&shared.primary);
            let up = nodes.iter().zip(&down).all(|(n, d)| n.node != node || !d);
            Resource::Guest(guest_resource(node, g, up))
        }));
    }
    if ty.is_none() || ty == Some("storage") {
        for n in &nodes {
            for id in storage::ids(n) {
                out.push(Resource::Storage(storage::resource(n, id)));
            }
        }
    }
    data(out)
}
