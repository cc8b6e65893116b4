//! The host and cluster views: version, nodes and node status, `/cluster/nextid` and
//! `/cluster/resources`, storage (`local` for templates and ISOs, `local-lvm` for guest
//! disks) and its content, the network (`vmbr0`), and task status, log and list.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::ids::{first_free_vmid, parse_upid};
use crate::model::GuestKind;
use crate::model::{Guest, Task};
use crate::schema::{specs, validate};
use crate::server::ApiRequest;
use crate::state::Shared;

pub(crate) const PVE_VERSION: &str = "9.0.3";
const GIB: u64 = 1 << 30;
const NODE_MEM: u64 = 64 * GIB;
const NODE_CPUS: u64 = 16;
const LVM_SIZE: u64 = 1024 * GIB;
const LOCAL_SIZE: u64 = 100 * GIB;

/// Container templates and ISO images on `local`, as `pveam download` would leave them.
pub(crate) const VZTMPL: &[&str] = &[
    "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
    "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst",
];
const ISOS: &[&str] = &["local:iso/debian-13.1.0-amd64-netinst.iso"];

pub(crate) fn version() -> Value {
    json!({"version": PVE_VERSION, "release": "9.0", "repoid": "a6a3c0b0"})
}

fn uptime(shared: &Shared) -> u64 {
    shared.started.elapsed().as_secs() + 86_400
}

fn mem_used(shared: &Shared) -> u64 {
    let st = shared.lock();
    st.guests
        .values()
        .filter(|g| g.running)
        .map(|g| g.memory_mb().saturating_mul(1 << 20))
        .fold(2 * GIB, u64::saturating_add)
}

pub(crate) fn nodes(shared: &Arc<Shared>) -> Value {
    json!([{
        "node": shared.node,
        "id": format!("node/{}", shared.node),
        "type": "node",
        "status": "online",
        "level": "",
        "cpu": 0.03,
        "maxcpu": NODE_CPUS,
        "mem": mem_used(shared).min(NODE_MEM),
        "maxmem": NODE_MEM,
        "disk": 8 * GIB,
        "maxdisk": LOCAL_SIZE,
        "uptime": uptime(shared),
        "ssl_fingerprint": shared.fingerprint,
    }])
}

pub(crate) fn cluster_status(shared: &Arc<Shared>) -> Value {
    json!([{
        "id": format!("node/{}", shared.node),
        "name": shared.node,
        "type": "node",
        "ip": "127.0.0.1",
        "level": "",
        "local": 1,
        "nodeid": 0,
        "online": 1,
    }])
}

/// `GET /nodes/{node}/status`. `cpuinfo.flags` has `vmx`: nested virtualization is available.
pub(crate) fn node_status(shared: &Arc<Shared>) -> Value {
    let used = mem_used(shared).min(NODE_MEM);
    json!({
        "uptime": uptime(shared),
        "cpu": 0.03,
        "wait": 0.0,
        "loadavg": ["0.12", "0.08", "0.05"],
        "cpuinfo": {
            "model": "pvesim virtual CPU",
            "cpus": NODE_CPUS,
            "sockets": 1,
            "cores": NODE_CPUS,
            "mhz": "3000.000",
            "hvm": "1",
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc pni vmx ssse3 sse4_1 sse4_2 x2apic popcnt aes xsave avx hypervisor",
        },
        "memory": {"total": NODE_MEM, "used": used, "free": NODE_MEM - used, "available": NODE_MEM - used},
        "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
        "rootfs": {"total": LOCAL_SIZE, "used": 8 * GIB, "free": LOCAL_SIZE - 8 * GIB, "avail": LOCAL_SIZE - 8 * GIB},
        "ksm": {"shared": 0},
        "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z) x86_64",
        "pveversion": format!("pve-manager/{PVE_VERSION}/a6a3c0b0"),
        "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "machine": "x86_64", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2"},
        "boot-info": {"mode": "efi", "secureboot": 0},
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

pub(crate) fn guest_resource(node: &str, g: &Guest) -> Value {
    let t = match g.kind {
        GuestKind::Qemu => "qemu",
        GuestKind::Lxc => "lxc",
    };
    let mut v = json!({
        "id": format!("{t}/{}", g.vmid),
        "type": t,
        "vmid": g.vmid,
        "name": g.name(),
        "node": node,
        "status": if g.running { "running" } else { "stopped" },
        "template": u8::from(g.template()),
        "maxcpu": g.cores(),
        "cpu": if g.running { 0.01 } else { 0.0 },
        "maxmem": g.memory_mb() << 20,
        "mem": if g.running { (g.memory_mb() << 20) / 4 } else { 0 },
        "maxdisk": g.maxdisk(),
        "disk": 0,
        "uptime": g.uptime(),
        "netin": 0,
        "netout": 0,
        "diskread": 0,
        "diskwrite": 0,
    });
    if let Some(tags) = g.config.get("tags") {
        v["tags"] = tags.clone();
    }
    if let Some(l) = g.lock_prop() {
        v["lock"] = json!(l);
    }
    v
}

fn storage_resource(shared: &Shared, id: &str) -> Value {
    json!({
        "id": format!("storage/{}/{id}", shared.node),
        "type": "storage",
        "storage": id,
        "node": shared.node,
        "status": "available",
        "plugintype": if id == "local" { "dir" } else { "lvmthin" },
        "content": storage_content_types(id),
        "shared": 0,
        "disk": 0,
        "maxdisk": if id == "local" { LOCAL_SIZE } else { LVM_SIZE },
    })
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
    if ty.is_none() || ty == Some("node") {
        if let Some(n) = nodes(shared).as_array().and_then(|a| a.first()) {
            out.push(n.clone());
        }
    }
    if ty.is_none() || ty == Some("vm") {
        let st = shared.lock();
        out.extend(st.guests.values().map(|g| guest_resource(&shared.node, g)));
    }
    if ty.is_none() || ty == Some("storage") {
        out.push(storage_resource(shared, "local"));
        out.push(storage_resource(shared, "local-lvm"));
    }
    Ok(Value::Array(out))
}

fn storage_content_types(id: &str) -> &'static str {
    if id == "local" {
        "backup,iso,snippets,vztmpl"
    } else {
        "images,rootdir"
    }
}

pub(crate) fn storage_config() -> Value {
    json!([
        {"storage": "local", "type": "dir", "path": "/var/lib/vz", "content": storage_content_types("local"), "shared": 0, "digest": "0"},
        {"storage": "local-lvm", "type": "lvmthin", "thinpool": "data", "vgname": "pve", "content": storage_content_types("local-lvm"), "shared": 0, "digest": "0"},
    ])
}

pub(crate) fn storage_get(id: &str) -> ApiResult<()> {
    if id == "local" || id == "local-lvm" {
        Ok(())
    } else {
        Err(ApiError::internal(format!("storage '{id}' does not exist")))
    }
}

fn used_lvm(shared: &Shared) -> u64 {
    let st = shared.lock();
    st.guests
        .values()
        .flat_map(|g| g.disks())
        .map(|(_, s)| s)
        .fold(0, u64::saturating_add)
}

fn storage_entry(shared: &Shared, id: &str) -> Value {
    let (total, used) = if id == "local" {
        (LOCAL_SIZE, 8 * GIB)
    } else {
        (LVM_SIZE, used_lvm(shared).min(LVM_SIZE))
    };
    json!({
        "storage": id,
        "type": if id == "local" { "dir" } else { "lvmthin" },
        "content": storage_content_types(id),
        "active": 1,
        "enabled": 1,
        "shared": 0,
        "total": total,
        "used": used,
        "avail": total - used,
        "used_fraction": used as f64 / total as f64,
    })
}

/// `GET /nodes/{node}/storage[?content=images][&storage=ID]`.
pub(crate) fn storage_list(shared: &Arc<Shared>, req: &ApiRequest) -> Value {
    let content = req.params.get("content");
    let only = req.params.get("storage");
    Value::Array(
        ["local", "local-lvm"]
            .iter()
            .filter(|id| only.is_none_or(|o| o == **id))
            .filter(|id| {
                content.is_none_or(|c| {
                    c.split(',')
                        .all(|c| storage_content_types(id).split(',').any(|t| t == c))
                })
            })
            .map(|id| storage_entry(shared, id))
            .collect(),
    )
}

pub(crate) fn storage_status(shared: &Arc<Shared>, id: &str) -> ApiResult<Value> {
    storage_get(id)?;
    Ok(storage_entry(shared, id))
}

/// `GET /nodes/{node}/storage/{storage}/content[?content=...][&vmid=N]`.
pub(crate) fn storage_content(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    id: &str,
) -> ApiResult<Value> {
    storage_get(id)?;
    let content = req.params.get("content");
    let vmid = req.params.int("vmid");
    let want = |c: &str| content.is_none_or(|x| x == c);
    let ctime = now_unix().saturating_sub(86_400);
    let mut out = Vec::new();
    if id == "local" {
        if want("vztmpl") {
            for v in VZTMPL {
                out.push(json!({"volid": v, "content": "vztmpl", "format": "tzst", "size": 130_000_000u64, "ctime": ctime}));
            }
        }
        if want("iso") {
            for v in ISOS {
                out.push(json!({"volid": v, "content": "iso", "format": "iso", "size": 700_000_000u64, "ctime": ctime}));
            }
        }
        return Ok(Value::Array(out));
    }
    let st = shared.lock();
    for g in st.guests.values() {
        if vmid.is_some_and(|v| v != i64::from(g.vmid)) {
            continue;
        }
        let c = match g.kind {
            GuestKind::Qemu => "images",
            GuestKind::Lxc => "rootdir",
        };
        if !want(c) {
            continue;
        }
        for (key, size) in g.disks() {
            let Some(prop) = g.config.get(&key).and_then(Value::as_str) else {
                continue;
            };
            let volid = prop.split(',').next().unwrap_or("");
            let Some(vol) = volid.strip_prefix("local-lvm:") else {
                continue;
            };
            // A linked clone's volume is `base-X-disk-0/vm-Y-disk-0`: list its own name.
            let (parent, own) = match vol.split_once('/') {
                Some((p, o)) => (Some(p), o),
                None => (None, vol),
            };
            let mut v = json!({
                "volid": format!("local-lvm:{own}"),
                "content": c,
                "format": "raw",
                "size": size,
                "used": size / 4,
                "vmid": g.vmid,
                "ctime": ctime,
            });
            if let Some(p) = parent {
                v["parent"] = json!(p);
            }
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}

/// `GET /nodes/{node}/network[?type=bridge|any_bridge|eth|...]`.
pub(crate) fn network(req: &ApiRequest) -> Value {
    let ty = req.params.get("type");
    let all = [
        json!({"iface": "eno1", "type": "eth", "active": 1, "autostart": 1, "exists": 1, "families": ["inet"], "method": "manual", "method6": "manual", "priority": 3}),
        json!({"iface": "vmbr0", "type": "bridge", "active": 1, "autostart": 1, "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0", "bridge_vlan_aware": 1, "cidr": "198.51.100.2/24", "address": "198.51.100.2", "netmask": "24", "gateway": "198.51.100.1", "families": ["inet"], "method": "static", "method6": "manual", "priority": 4}),
    ];
    Value::Array(
        all.into_iter()
            .filter(|i| {
                let t = i["type"].as_str().unwrap_or("");
                match ty {
                    None => true,
                    Some("any_bridge") => t == "bridge" || t == "OVSBridge",
                    Some(x) => x == t,
                }
            })
            .collect(),
    )
}

fn find_task(shared: &Shared, upid: &str) -> ApiResult<Task> {
    if parse_upid(upid).is_none() {
        return Err(ApiError::param("upid", "unable to parse worker upid"));
    }
    shared
        .lock()
        .tasks
        .get(upid)
        .cloned()
        .ok_or_else(|| ApiError::param("upid", "no such task"))
}

pub(crate) fn task_status(shared: &Arc<Shared>, upid: &str) -> ApiResult<Value> {
    Ok(find_task(shared, upid)?.status_json())
}

/// `GET /nodes/{node}/tasks/{upid}/log[?start=N][&limit=N]`: `[{"n":1,"t":"..."}]`, with
/// `total` beside `data` as PVE sends it.
pub(crate) fn task_log(shared: &Arc<Shared>, req: &mut ApiRequest, upid: &str) -> ApiResult<Value> {
    let mut params = req.params.clone();
    params.insert("upid", upid);
    params.insert("node", shared.node.clone());
    validate(&params, specs::TASK_LOG, None)?;
    let task = find_task(shared, upid)?;
    let start = params.int("start").unwrap_or(0).max(0) as usize;
    let limit = params.int("limit").unwrap_or(50).max(0) as usize;
    let lines: Vec<Value> = task
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|(i, t)| json!({"n": i + 1, "t": t}))
        .collect();
    req.extra.insert("total".into(), json!(task.log.len()));
    Ok(Value::Array(lines))
}

/// `GET /nodes/{node}/tasks[?vmid=N][&limit=N][&source=active|archive|all]`, newest first.
pub(crate) fn task_list(shared: &Arc<Shared>, req: &ApiRequest) -> Value {
    let st = shared.lock();
    let vmid = req.params.get("vmid");
    let limit = req.params.int("limit").unwrap_or(50).max(0) as usize;
    let source = req.params.get("source").unwrap_or("archive");
    Value::Array(
        st.task_order
            .iter()
            .rev()
            .filter_map(|u| st.tasks.get(u))
            .filter(|t| vmid.is_none_or(|v| t.id == v))
            .filter(|t| match source {
                "active" => t.running,
                "all" => true,
                _ => !t.running,
            })
            .take(limit)
            .map(|t| t.list_json())
            .collect(),
    )
}
