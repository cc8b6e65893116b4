//! Storage and network: `local` (a directory, for templates and ISOs), `local-lvm` (thin
//! LVM, for guest disks) and `local-zfs` (a ZFS pool, for guest disks: a second place a full
//! clone can be sent to), their configuration, status and content (the guests' volumes found
//! in their configs, the files `content` keeps), and the node's network (`eno1` and the bridge
//! `vmbr0`). A cluster adds `ceph-vm` (RBD, shared: the same volumes on every node).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::request::{data, ApiRequest};
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::state::Shared;

pub(crate) const GIB: u64 = 1 << 30;
const LVM_SIZE: u64 = 1024 * GIB;
const ZFS_SIZE: u64 = 512 * GIB;
pub(crate) const LOCAL_SIZE: u64 = 100 * GIB;

/// The storages, in PVE's listing order.
pub(crate) const STORAGES: [&str; 3] = ["local", "local-lvm", "local-zfs"];
/// A cluster's shared storage.
const SHARED: &str = crate::cluster::SHARED_STORAGE;
const RBD_SIZE: u64 = 2048 * GIB;

/// The storages of this simulator: [`STORAGES`], and in a cluster its shared one.
pub(crate) fn ids(shared: &Shared) -> Vec<&'static str> {
    let mut v = STORAGES.to_vec();
    if shared.cluster.is_some() {
        v.push(SHARED);
    }
    v
}

/// Whether storage `id` is shared (the same on every node).
pub(crate) fn is_shared(shared: &Shared, id: &str) -> bool {
    id == SHARED && shared.cluster.is_some()
}

/// ISO images on `local` (container templates are files in the state: `State::files`).
const ISOS: &[&str] = &["local:iso/debian-13.1.0-amd64-netinst.iso"];

/// One storage in `GET /cluster/resources`.
#[derive(Serialize)]
pub(crate) struct StorageResource {
    id: String,
    #[serde(rename = "type")]
    ty: &'static str,
    storage: &'static str,
    node: String,
    status: &'static str,
    plugintype: &'static str,
    content: &'static str,
    shared: u8,
    disk: u64,
    maxdisk: u64,
}

/// One storage in `GET /storage` (the datacenter's `storage.cfg`).
#[derive(Serialize)]
struct StorageConfig {
    storage: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinpool: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vgname: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sparse: Option<u8>,
    content: &'static str,
    shared: u8,
    digest: &'static str,
}

/// One storage in `GET /nodes/{node}/storage` and its `.../status`.
#[derive(Serialize)]
struct StorageStatus {
    storage: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    content: &'static str,
    active: u8,
    enabled: u8,
    shared: u8,
    total: u64,
    used: u64,
    avail: u64,
    used_fraction: f64,
}

/// One volume in `GET .../storage/{storage}/content`. Guest volumes have the members their
/// plugin's `list_images` gives (pve-storage `PVE/Storage/LvmThinPlugin.pm`: `volid, format,
/// size, vmid, ctime`; `ZFSPoolPlugin.pm` via `zfs_list_zvol`: `name, size, parent, format,
/// vmid` and no `ctime`), plus `content` from `Plugin.pm` `list_volumes`; none has `used`.
#[derive(Serialize)]
struct Volume {
    volid: String,
    content: &'static str,
    format: &'static str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    vmid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctime: Option<u64>,
    /// ZFS only: the zvol's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// ZFS only: the snapshot a linked clone comes from (`base-9000-disk-0@__base__`), else
    /// null.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Value>,
}

/// One interface in `GET /nodes/{node}/network`; the bridge has the address.
#[derive(Serialize)]
struct Iface {
    iface: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    active: u8,
    autostart: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    exists: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge_ports: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge_stp: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge_fd: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge_vlan_aware: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cidr: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netmask: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<&'static str>,
    families: [&'static str; 1],
    method: &'static str,
    method6: &'static str,
    priority: u32,
}

fn content_types(shared: &Shared, id: &str) -> &'static str {
    if id == "local" {
        super::content::local_content(shared.bare)
    } else {
        "images,rootdir"
    }
}

/// Whether storage `id` exists and holds content type `content`: one of `images`,
/// `rootdir` or `vztmpl`, which a bare host and a seeded one configure alike (they differ
/// in `import` and `snippets` only; ask [`content_types`] for those).
pub(crate) fn takes(shared: &Shared, id: &str, content: &str) -> bool {
    let types = if id == "local" {
        super::content::local_content(false)
    } else {
        "images,rootdir"
    };
    ids(shared).contains(&id) && types.split(',').any(|c| c == content)
}

/// The storage's name as a `'static` one of [`ids`] (callers checked it exists).
fn storage_name(id: &str) -> &'static str {
    STORAGES
        .iter()
        .chain([&SHARED])
        .find(|s| **s == id)
        .copied()
        .unwrap_or("local-lvm")
}

/// PVE's plugin type of a storage.
pub(crate) fn plugin(id: &str) -> &'static str {
    match id {
        "local" => "dir",
        "local-zfs" => "zfspool",
        SHARED => "rbd",
        _ => "lvmthin",
    }
}

fn size_of(id: &str) -> u64 {
    match id {
        "local" => LOCAL_SIZE,
        "local-zfs" => ZFS_SIZE,
        SHARED => RBD_SIZE,
        _ => LVM_SIZE,
    }
}

pub(crate) fn resource(shared: &Shared, id: &str) -> StorageResource {
    StorageResource {
        id: format!("storage/{}/{id}", shared.node),
        ty: "storage",
        storage: storage_name(id),
        node: shared.node.clone(),
        status: "available",
        plugintype: plugin(id),
        content: content_types(shared, id),
        shared: u8::from(is_shared(shared, id)),
        disk: 0,
        maxdisk: size_of(id),
    }
}

/// `GET /storage`.
pub(crate) fn config(shared: &Shared) -> ApiResult<Value> {
    let mut out = vec![
        StorageConfig {
            storage: "local",
            ty: "dir",
            path: Some("/var/lib/vz"),
            thinpool: None,
            vgname: None,
            pool: None,
            sparse: None,
            content: content_types(shared, "local"),
            shared: 0,
            digest: "0",
        },
        StorageConfig {
            storage: "local-lvm",
            ty: "lvmthin",
            path: None,
            thinpool: Some("data"),
            vgname: Some("pve"),
            pool: None,
            sparse: None,
            content: content_types(shared, "local-lvm"),
            shared: 0,
            digest: "0",
        },
        StorageConfig {
            storage: "local-zfs",
            ty: "zfspool",
            path: None,
            thinpool: None,
            vgname: None,
            pool: Some("rpool/data"),
            sparse: Some(1),
            content: content_types(shared, "local-zfs"),
            shared: 0,
            digest: "0",
        },
    ];
    if shared.cluster.is_some() {
        // pve-storage `PVE/Storage/RBDPlugin.pm`: `shared` is always set for RBD.
        out.push(StorageConfig {
            storage: SHARED,
            ty: "rbd",
            path: None,
            thinpool: None,
            vgname: None,
            pool: Some("vm-pool"),
            sparse: None,
            content: "images,rootdir",
            shared: 1,
            digest: "0",
        });
    }
    data(out)
}

/// The storage exists, or PVE's error.
pub(crate) fn get(shared: &Shared, id: &str) -> ApiResult<()> {
    if ids(shared).contains(&id) {
        Ok(())
    } else {
        Err(ApiError::internal(format!("storage '{id}' does not exist")))
    }
}

/// The bytes of the guests' volumes on storage `id`.
fn used_on(shared: &Shared, id: &str) -> u64 {
    let everywhere = is_shared(shared, id);
    let st = shared.lock();
    st.guests
        .values()
        .filter(|g| everywhere || g.node_or(&shared.primary) == shared.node)
        .flat_map(|g| {
            g.disks()
                .into_iter()
                .filter(|(key, _)| volume_storage(g.config.get(key)) == Some(id))
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        })
        .fold(0, u64::saturating_add)
}

/// The storage of a disk's config value (`local-lvm:vm-100-disk-0,size=8G` → `local-lvm`).
fn volume_storage(prop: Option<&Value>) -> Option<&str> {
    prop?
        .as_str()?
        .split(',')
        .next()?
        .split_once(':')
        .map(|(s, _)| s)
}

fn status_of(shared: &Shared, id: &str) -> StorageStatus {
    let total = size_of(id);
    let used = if id == "local" {
        8 * GIB
    } else {
        used_on(shared, id).min(total)
    };
    StorageStatus {
        storage: storage_name(id),
        ty: plugin(id),
        content: content_types(shared, id),
        active: 1,
        enabled: 1,
        shared: u8::from(is_shared(shared, id)),
        total,
        used,
        avail: total - used,
        used_fraction: used as f64 / total as f64,
    }
}

/// `GET /nodes/{node}/storage[?content=images][&storage=ID]`.
pub(crate) fn list(shared: &Arc<Shared>, req: &ApiRequest) -> ApiResult<Value> {
    let content = req.params.get("content");
    let only = req.params.get("storage");
    data(
        ids(shared)
            .iter()
            .filter(|id| only.is_none_or(|o| o == **id))
            .filter(|id| {
                content.is_none_or(|c| {
                    c.split(',')
                        .all(|c| content_types(shared, id).split(',').any(|t| t == c))
                })
            })
            .map(|id| status_of(shared, id))
            .collect::<Vec<_>>(),
    )
}

/// pve-storage `PVE/API2/Storage/Status.pm` `read_status`: the storage's `storage_info`
/// entry as it is (no `storage`, no `used_fraction`: `index` adds those), and an unknown
/// storage is a parameter error (`raise_param_exc`), not a 500.
pub(crate) fn status(shared: &Arc<Shared>, id: &str) -> ApiResult<Value> {
    if !ids(shared).contains(&id) {
        return Err(ApiError::param("storage", "No such storage."));
    }
    let mut v = data(status_of(shared, id))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("storage");
        o.remove("used_fraction");
    }
    Ok(v)
}

/// `GET /nodes/{node}/storage/{storage}/content[?content=...][&vmid=N]`.
pub(crate) fn content(shared: &Arc<Shared>, req: &ApiRequest, id: &str) -> ApiResult<Value> {
    get(shared, id)?;
    let content = req.params.get("content");
    let vmid = req.params.int("vmid");
    let want = |c: &str| content.is_none_or(|x| x == c);
    let ctime = now_unix().saturating_sub(86_400);
    let file = |volid: &str, content: &'static str, format: &'static str, size: u64| Volume {
        volid: volid.to_string(),
        content,
        format,
        size,
        vmid: None,
        ctime: Some(ctime),
        name: None,
        parent: None,
    };
    let mut out = Vec::new();
    if id == "local" {
        // Container templates, imports and uploaded ISOs are real files (`content`).
        if want("iso") && !shared.bare {
            for v in ISOS {
                out.push(file(v, "iso", "iso", 700_000_000));
            }
        }
        let mut all: Vec<Value> = out
            .iter()
            .filter_map(|v| serde_json::to_value(v).ok())
            .collect();
        all.extend(
            super::content::volumes(shared, id, content)
                .iter()
                .filter_map(|v| serde_json::to_value(v).ok()),
        );
        if want("backup") {
            let vmid = vmid.and_then(|v| u32::try_from(v).ok());
            all.extend(super::vzdump::backup_volumes(shared, id, vmid));
        }
        return data(all);
    }
    let st = shared.lock();
    let everywhere = is_shared(shared, id);
    for g in st
        .guests
        .values()
        .filter(|g| everywhere || g.node_or(&shared.primary) == shared.node)
    {
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
            let Some(vol) = volid.strip_prefix(id).and_then(|v| v.strip_prefix(':')) else {
                continue;
            };
            // A linked clone's volume is `base-X-disk-0/vm-Y-disk-0`: LVM-thin lists its own
            // name, ZFS the whole and the base's snapshot as `parent`.
            let (parent, own) = match vol.split_once('/') {
                Some((p, o)) => (Some(p), o),
                None => (None, vol),
            };
            let zfs = plugin(id) == "zfspool";
            out.push(Volume {
                volid: if zfs {
                    format!("{id}:{vol}")
                } else {
                    format!("{id}:{own}")
                },
                content: c,
                format: "raw",
                size,
                vmid: Some(g.vmid),
                ctime: (!zfs).then_some(ctime),
                name: zfs.then(|| own.to_string()),
                parent: zfs
                    .then(|| parent.map_or(Value::Null, |p| Value::from(format!("{p}@__base__")))),
            });
        }
    }
    data(out)
}

/// `GET /nodes/{node}/network[?type=bridge|any_bridge|eth|...]`.
pub(crate) fn network(req: &ApiRequest) -> ApiResult<Value> {
    let ty = req.params.get("type");
    let all = [
        Iface {
            iface: "eno1",
            ty: "eth",
            active: 1,
            autostart: 1,
            exists: Some(1),
            bridge_ports: None,
            bridge_stp: None,
            bridge_fd: None,
            bridge_vlan_aware: None,
            cidr: None,
            address: None,
            netmask: None,
            gateway: None,
            families: ["inet"],
            method: "manual",
            method6: "manual",
            priority: 3,
        },
        Iface {
            iface: "vmbr0",
            ty: "bridge",
            active: 1,
            autostart: 1,
            exists: None,
            bridge_ports: Some("eno1"),
            bridge_stp: Some("off"),
            bridge_fd: Some("0"),
            bridge_vlan_aware: Some(1),
            cidr: Some("198.51.100.2/24"),
            address: Some("198.51.100.2"),
            netmask: Some("24"),
            gateway: Some("198.51.100.1"),
            families: ["inet"],
            method: "static",
            method6: "manual",
            priority: 4,
        },
    ];
    data(
        all.into_iter()
            .filter(|i| match ty {
                None => true,
                Some("any_bridge") => i.ty == "bridge" || i.ty == "OVSBridge",
                Some(x) => x == i.ty,
            })
            .collect::<Vec<_>>(),
    )
}
